"""The one rule that turns criterion verdicts into a score and a verdict.

Scoring totals a call with it, reviews re-total a scorecard with reviewed verdicts in place of the
automatic ones, and the provisional check asks what the total would be were doubtful verdicts the
other way: all three read the same rule, so they cannot drift apart.

Violations cost the call through `Charge`s: one fails it outright (`auto_fail`), another takes
percentage points off its score (an outdated-policy mention whose pack says `deduct`). A rule's
points come off once however often it is broken in the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


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
class Charge:
    """What one counted violation costs the call."""

    rule: str  # the rule broken ("kind:id"): its points come off once per call
    auto_fail: bool = False
    points: float = 0.0  # percentage points off the call's score


def charge_of(violation: Mapping[str, Any]) -> Charge:
    """The charge of a violation as a scorecard stores it (`auto_fail`, `deducted_points`)."""
    rule = f"{violation.get('kind')}:{violation.get('policy_id') or violation.get('id')}"
    return Charge(rule, bool(violation.get("auto_fail")), float(violation.get("deducted_points") or 0.0))


@dataclass(frozen=True)
class Totals:
    score: float  # percent of the applicable points earned (100 when none applied), less deductions
    auto_fail: bool
    passed: bool | None  # None without a pass mark
    sections: dict[str, dict[str, float]] = field(default_factory=dict)
    deducted: float = 0.0  # percentage points the charges took off (the score stops at 0)


def tally(lines: Iterable[Line], *, charges: Iterable[Charge] = (), auto_fail_violation: bool = False,
          pass_mark: float | None) -> Totals:
    """Score, auto-fail, verdict and per-section points of a call's criteria and its violations' charges.

    Only applicable criteria count; an applicable auto-fail criterion that failed, or any violation
    that fails a call on its own, fails it whatever the score. Each rule's deduction comes off the
    score once (the largest, if its charges differ); sections show criteria points only.
    """
    available = earned = 0.0
    auto_fail = auto_fail_violation
    per_rule: dict[str, float] = {}
    for c in charges:
        auto_fail = auto_fail or c.auto_fail
        per_rule[c.rule] = max(per_rule.get(c.rule, 0.0), c.points)
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
    deducted = min(score, sum(per_rule.values()))
    score -= deducted
    passed = None if pass_mark is None else score >= pass_mark - 1e-9 and not auto_fail
    return Totals(score=score, auto_fail=auto_fail, passed=passed, sections=sections, deducted=deducted)
