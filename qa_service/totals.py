"""The one rule that turns criterion verdicts into a score and a verdict.

Scoring totals a call with it, reviews re-total a scorecard with reviewed verdicts in place of the
automatic ones, and the provisional check asks what the total would be were doubtful verdicts the
other way: all three read the same rule, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Line:
    """One criterion as the totals see it."""

    section: str
    applicable: bool
    passed: bool
    points: float
    max_points: float
    auto_fail: bool = False  # failing it fails the call


@dataclass(frozen=True)
class Totals:
    score: float  # percent of the applicable points earned (100 when none applied)
    auto_fail: bool
    passed: bool | None  # None without a pass mark
    sections: dict[str, dict[str, float]] = field(default_factory=dict)


def tally(lines: Iterable[Line], *, auto_fail_violation: bool, pass_mark: float | None) -> Totals:
    """Score, auto-fail, verdict and per-section points of a call's criteria.

    Only applicable criteria count; an applicable auto-fail criterion that failed, or any violation
    that fails a call on its own, fails it whatever the score.
    """
    available = earned = 0.0
    auto_fail = auto_fail_violation
    sections: dict[str, dict[str, float]] = {}
    for line in lines:
        sec = sections.setdefault(line.section, {"points": 0.0, "max_points": 0.0, "score": 100.0})
        if not line.applicable:
            continue
        available += line.max_points
        earned += line.points
        sec["points"] += line.points
        sec["max_points"] += line.max_points
        auto_fail = auto_fail or (line.auto_fail and not line.passed)
    for sec in sections.values():
        sec["score"] = round(100.0 * sec["points"] / sec["max_points"], 2) if sec["max_points"] else 100.0
    score = 100.0 * earned / available if available > 0 else 100.0
    passed = None if pass_mark is None else score >= pass_mark - 1e-9 and not auto_fail
    return Totals(score=score, auto_fail=auto_fail, passed=passed, sections=sections)
