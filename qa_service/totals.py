"""The one rule that turns criterion verdicts into a score and a verdict.

Scoring totals a call with it, reviews re-total a scorecard with reviewed verdicts in place of the
automatic ones, and the provisional check asks what the total would be were doubtful verdicts the
other way: all three read the same rule, so they cannot drift apart.

Violations cost the call through `Charge`s: one fails it outright (`auto_fail`), another takes
percentage points off its score (an outdated-policy mention whose pack says `deduct`). A rule's
points come off once however often it is broken in the call.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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

    def ruled(self, passed: bool) -> Line:
        """The criterion with this verdict in place of its own: it applied, and the points follow."""
        return replace(self, applicable=True, passed=passed, points=self.max_points if passed else 0.0)


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


def line_of(criterion: Mapping[str, Any], *, auto_fail: bool | None = None) -> Line:
    """A criterion as a scorecard stores it; `auto_fail` in place of the card's own flag (the rubric's)."""
    return Line(str(criterion.get("section") or ""), bool(criterion.get("applicable", True)),
                bool(criterion.get("passed")), float(criterion.get("points") or 0.0),
                float(criterion.get("max_points") or 0.0),
                bool(criterion.get("auto_fail")) if auto_fail is None else auto_fail)


def retotal(criteria: Sequence[Mapping[str, Any]], violations: Sequence[Mapping[str, Any]], *,
            pass_mark: float | None, passes: Mapping[str, bool] | None = None,
            auto_fail_criteria: Collection[str] | None = None) -> Totals:
    """A stored scorecard totalled again as scoring totals it: `violations` are those that count,
    `passes` reviewed verdicts by criterion id in place of the automatic ones, `auto_fail_criteria` the
    rubric's auto-fail criteria in place of the card's flags."""
    passes = passes or {}
    lines = []
    for c in criteria:
        cid = str(c.get("id"))
        line = line_of(c, auto_fail=None if auto_fail_criteria is None else cid in auto_fail_criteria)
        lines.append(line.ruled(passes[cid]) if cid in passes else line)
    return tally(lines, charges=[charge_of(v) for v in violations], pass_mark=pass_mark)


def provisional_reasons(criteria: Sequence[tuple[str, Line, str | None]],
                        charges: Sequence[tuple[str, Charge, str | None]], *,
                        pass_mark: float | None) -> tuple[str, ...]:
    """Why a FAIL is provisional: it would pass were its doubtful verdicts the other way; else ().

    `criteria` and `charges` are (id, line or charge, doubt or None). A doubtful criterion is an
    applicable one that failed on weak evidence; a weak charge is a costly violation heard with doubt.
    """
    doubtful = {i for i, (_, line, doubt) in enumerate(criteria)
                if line.applicable and not line.passed and doubt}
    weak = {i for i, (_, charge, doubt) in enumerate(charges)
            if (charge.auto_fail or charge.points) and doubt}
    if not doubtful and not weak:
        return ()
    best = tally((line.ruled(True) if i in doubtful else line for i, (_, line, _) in enumerate(criteria)),
                 charges=[charge for i, (_, charge, _) in enumerate(charges) if i not in weak],
                 pass_mark=pass_mark)
    if not best.passed:
        return ()
    return tuple([f"{criteria[i][0]}: {criteria[i][2]}" for i in sorted(doubtful)]
                 + [f"{charges[i][0]}: {charges[i][2]}" for i in sorted(weak)])


def stored_reasons(criteria: Sequence[Mapping[str, Any]], violations: Sequence[Mapping[str, Any]], *,
                   pass_mark: float | None) -> tuple[str, ...]:
    """`provisional_reasons` of a scorecard as stored (its criteria and counted violations)."""
    return provisional_reasons([(str(c.get("id")), line_of(c), c.get("doubt")) for c in criteria],
                               [(str(v.get("id")), charge_of(v), v.get("doubt")) for v in violations],
                               pass_mark=pass_mark)
