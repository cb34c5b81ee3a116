"""Charts drawn as inline SVG on the server: a weekly score trend and horizontal bars.

No chart library and no script: the markup is complete when it leaves the server. Bars are SVG
rather than styled divs so the pages need no inline styles (the content security policy forbids
them). Colours come from CSS classes in static/app.css.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


def rate_class(rate: float | None) -> str:
    """CSS class for a pass rate or score fraction: good, fair or poor."""
    if rate is None:
        return "none"
    return "good" if rate >= 0.8 else "fair" if rate >= 0.5 else "poor"


def bar(fraction: float | None, label: str = "", cls: str | None = None) -> Markup:
    """A horizontal bar filled to `fraction` (0..1), coloured by rate unless a class is given."""
    frac = min(max(fraction or 0.0, 0.0), 1.0)
    fill = cls or rate_class(fraction)
    title = f"<title>{escape(label)}</title>" if label else ""
    return Markup(
        f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}">{title}<rect class="track" width="100" height="10"/>'
        f'<rect class="fill {escape(fill)}" width="{frac * 100:.2f}" height="10"/></svg>')


@dataclass(frozen=True)
class Part:
    """One stretch of a stacked bar."""

    value: float
    cls: str
    label: str


def stacked_bar(parts: Sequence[Part], total: float | None = None) -> Markup:
    """A bar split into parts proportional to their values (of `total`, or of their sum)."""
    whole = total if total and total > 0 else sum(p.value for p in parts)
    x = 0.0
    rects = []
    for p in parts:
        if whole <= 0 or p.value <= 0:
            continue
        width = min(p.value / whole * 100, 100 - x)
        rects.append(f'<rect class="{escape(p.cls)}" x="{x:.2f}" width="{width:.2f}" height="10">'
                     f"<title>{escape(p.label)}</title></rect>")
        x += width
    label = ", ".join(p.label for p in parts)
    return Markup(f'<svg class="bar stacked" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
                  f'aria-label="{escape(label)}"><rect class="track" width="100" height="10"/>'
                  f'{"".join(rects)}</svg>')


@dataclass(frozen=True)
class TrendPoint:
    """One week on the trend chart."""

    label: str
    mean_score: float
    pass_rate: float
    count: int


def trend_chart(points: Sequence[TrendPoint], *, pass_mark: float | None = None,
                width: int = 640, height: int = 220) -> Markup:
    """Mean score per week as a line over pass-rate columns, on a 0-100 scale."""
    if not points:
        return Markup('<p class="muted">No scored calls in this range.</p>')
    left, right, top, bottom = 36, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / len(points)

    def y(value: float) -> float:
        return top + plot_h * (1 - min(max(value, 0.0), 100.0) / 100)

    out = [f'<svg class="trend" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="Mean score and pass rate per week">']
    for tick in (0, 25, 50, 75, 100):
        ty = y(tick)
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
                   f'<text class="axis" x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}</text>')
    if pass_mark is not None:
        out.append(f'<line class="passmark" x1="{left}" x2="{width - right}" y1="{y(pass_mark):.1f}" '
                   f'y2="{y(pass_mark):.1f}"><title>Pass mark {pass_mark:g}</title></line>')
    col_w = max(step * 0.5, 2)
    coords = []
    label_every = max(1, len(points) // 8)
    for i, p in enumerate(points):
        cx = left + step * (i + 0.5)
        col_top = y(p.pass_rate * 100)
        out.append(f'<rect class="col {rate_class(p.pass_rate)}" x="{cx - col_w / 2:.1f}" y="{col_top:.1f}" '
                   f'width="{col_w:.1f}" height="{top + plot_h - col_top:.1f}">'
                   f"<title>{escape(p.label)}: pass rate {p.pass_rate * 100:.0f}% of {p.count} calls"
                   "</title></rect>")
        coords.append((cx, y(p.mean_score)))
        if i % label_every == 0:
            out.append(f'<text class="axis" x="{cx:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                       f"{escape(p.label)}</text>")
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{yy:.1f}" for i, (x, yy) in enumerate(coords))
    out.append(f'<path class="line" d="{path}"/>')
    for p, (cx, cy) in zip(points, coords, strict=True):
        out.append(f'<circle class="dot" cx="{cx:.1f}" cy="{cy:.1f}" r="4">'
                   f"<title>{escape(p.label)}: mean score {p.mean_score:.1f} over {p.count} calls"
                   "</title></circle>")
    legend_y = height - 8
    out.append(f'<circle class="dot" cx="{left + 6}" cy="{legend_y - 4}" r="4"/>'
               f'<text class="axis" x="{left + 16}" y="{legend_y}">mean score</text>'
               f'<rect class="col good" x="{left + 100}" y="{legend_y - 9}" width="10" height="10"/>'
               f'<rect class="col fair" x="{left + 111}" y="{legend_y - 9}" width="10" height="10"/>'
               f'<rect class="col poor" x="{left + 122}" y="{legend_y - 9}" width="10" height="10"/>'
               f'<text class="axis" x="{left + 138}" y="{legend_y}">'
               "pass rate (%): 80+, 50-79, under 50</text>")
    out.append("</svg>")
    return Markup("".join(out))
