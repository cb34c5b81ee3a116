"""Scorecards, batches and rescore impact as text for a terminal."""

from __future__ import annotations

from typing import Any


def format_scorecard(card: dict[str, Any]) -> str:
    """A readable summary: score, verdict, failed criteria, violations with quotes and times."""
    verdict = "PASS" if card["passed"] else "FAIL"
    lines = [f"{card['call_id']}  agent {card['agent_id']}  {card['call_date']}  "
             f"score {card['score']:.1f}  {verdict}" + ("  (auto-fail)" if card["auto_fail"] else "")]
    lines += [f"  ! {w}" for w in card.get("warnings", [])]
    failed = [c for c in card["criteria"] if c.get("applicable", True) and not c["passed"]]
    if failed:
        lines.append("  failed criteria:")
        lines += [f"    - {c['id']}: {c['title']} (-{c['max_points']:g})" for c in failed]
    for key, heading in (("violations", "violations"), ("to_check", "to check (not counted)")):
        if card.get(key):
            lines.append(f"  {heading}:")
            for v in card[key]:
                lines.append(f"    - [{v['kind']}] {v['id']} at {clock(v['start'])} ({v['speaker']}): "
                             f"\"{v['text']}\"")
                if v.get("detail"):
                    lines.append(f"      {v['detail']}")
    return "\n".join(lines)


def format_table(cards: list[dict[str, Any]]) -> str:
    """One line per scorecard, for batches."""
    header = f"{'call':<16} {'agent':<14} {'date':<10} {'score':>6}  {'verdict':<7} violations"
    rows = [header, "-" * len(header)]
    for c in cards:
        verdict = "PASS" if c["passed"] else ("AUTO" if c["auto_fail"] else "FAIL")
        viol = ", ".join(v.get("policy_id") or v["id"] for v in c["violations"]) or "-"
        rows.append(f"{c['call_id']:<16} {c['agent_id']:<14} {c['call_date']:<10} {c['score']:>6.1f}  "
                    f"{verdict:<7} {viol}")
    return "\n".join(rows)


def clock(seconds: float) -> str:
    """Seconds from the start of a call as mm:ss.s."""
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def format_impact(summary: dict[str, Any], rubric: Any, *, dry_run: bool) -> str:
    """The rescore impact report for a terminal."""
    lines = [f"rescored {summary['calls']} calls with rubric {rubric.id} {rubric.version}"
             + (" (dry run: nothing stored)" if dry_run else ""),
             f"  score changed on {summary['score_changed']} calls, "
             f"mean change {summary['mean_score_change']:+.2f}",
             f"  verdict flipped: {summary['flipped_to_fail']} to fail, {summary['flipped_to_pass']} to pass"]
    for agent, flips in summary["agents_with_flips"].items():
        lines.append(f"    {agent}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in flips.items()))
    for label, key in (("new violations", "new_violations"), ("vanished violations", "vanished_violations")):
        if summary[key]:
            lines.append(f"  {label}: " + ", ".join(f"{v} x{n}" for v, n in summary[key].items()))
    if summary["refresher"]:
        lines.append("  refresher list (agents stating outdated policy):")
        for agent, facts in summary["refresher"].items():
            listed = ", ".join(f"{fact} ({len(calls)} call{'s' if len(calls) != 1 else ''})"
                               for fact, calls in facts.items())
            lines.append(f"    {agent}: {listed}")
    return "\n".join(lines)
