"""Human review of scorecards, as pure functions: reviewed verdicts on top of automatic ones, and sampling.

A reviewer overrides a criterion (`override_pass`, `override_fail`), confirms or dismisses a
violation (`confirm`: it was said and counts as found; `dismiss`: it gives back what it cost, its
points or its auto-fail), confirms or dismisses an item listed to check (`confirm`, `dismiss`: a
confirmed one counts as a violation, at the cost its scorecard names), or confirms a provisional
verdict (target `verdict`, id `verdict`), always with a reason; `restore` returns a target to its
automatic verdict. Reviews never change the automatic `score` / `passed`: `apply_reviews` adds a
`review` section with the reviewed verdict of each reviewed target, its history, the violations as
reviewed, and a recomputed `reviewed_score`, `reviewed_deducted_points`, `reviewed_passed` and
`reviewed_provisional`.

Sampling: a deterministic share of each agent's calls per ISO week is marked for review (the hash
of the call id within agent and week decides, so every process and every rerun agrees), plus every
auto-failed call, every call whose scorecard lists items to check and every call with an
outdated-policy violation.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import yaml

from qa_service.totals import retotal

TargetKind = Literal["criterion", "violation", "to_check", "verdict"]
Action = Literal["override_pass", "override_fail", "dismiss", "confirm", "restore"]

TARGET_KINDS: tuple[str, ...] = ("criterion", "violation", "to_check", "verdict")
ACTIONS: dict[str, tuple[str, ...]] = {
    "criterion": ("override_pass", "override_fail", "restore"),
    "violation": ("confirm", "dismiss", "restore"),
    "to_check": ("confirm", "dismiss", "restore"),
    "verdict": ("confirm", "restore"),
}
VERDICT_ID = "verdict"
_LISTS = {"criterion": "criteria", "violation": "violations", "to_check": "to_check"}
# The longest reason a review keeps, whether it comes through the API or the call page's form.
MAX_REASON_CHARS = 2000
DEFAULT_SHARE = 0.10
SHARE_ENV = "QA_REVIEW_SHARE"


@dataclass(frozen=True)
class Review:
    """One reviewer action on one criterion or violation of a call's scorecard."""

    call_id: str
    scorecard_version: int
    target_kind: TargetKind
    target_id: str
    action: Action
    reason: str
    reviewer_key_id: str
    reviewer_name: str
    created_at: datetime
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "call_id": self.call_id, "scorecard_version": self.scorecard_version,
                "target": self.target_kind, "target_id": self.target_id, "action": self.action,
                "reason": self.reason,
                "reviewer": {"key_id": self.reviewer_key_id, "name": self.reviewer_name},
                "created_at": self.created_at.isoformat()}


class ReviewError(ValueError):
    """A review that cannot apply: an action that does not fit its target, or an empty reason."""


def check_review(target_kind: str, action: str, reason: str) -> None:
    """Raise ReviewError unless the action fits the target kind and the reason says something short."""
    if target_kind not in ACTIONS:
        raise ReviewError(f"target must be one of: {', '.join(TARGET_KINDS)}")
    if action not in ACTIONS[target_kind]:
        raise ReviewError(f"a {target_kind} can be reviewed with: {', '.join(ACTIONS[target_kind])}")
    if not reason.strip():
        raise ReviewError("a review needs a reason")
    if len(reason) > MAX_REASON_CHARS:
        raise ReviewError(f"a reason is limited to {MAX_REASON_CHARS:,} characters "
                          f"(this one has {len(reason):,})")


def has_target(card: dict[str, Any], target_kind: str, target_id: str) -> bool:
    """Whether the scorecard has a criterion, violation or item to check with this id (or, for the
    verdict, whether the id is "verdict")."""
    if target_kind == "verdict":
        return target_id == VERDICT_ID
    return any(str(item.get("id")) == target_id for item in card.get(_LISTS[target_kind]) or [])


def rubric_terms(yaml_text: str) -> tuple[float | None, frozenset[str]]:
    """The pass mark and the auto-fail criteria of a stored rubric, read without the rule compiler."""
    # Only two plain fields are needed, so the API process does not load spaCy to validate patterns.
    doc = yaml.safe_load(yaml_text)
    if not isinstance(doc, dict):
        return None, frozenset()
    mark = doc.get("pass_mark")
    auto = frozenset(str(c.get("id")) for c in doc.get("criteria") or []
                     if isinstance(c, dict) and c.get("auto_fail"))
    return (float(mark) if isinstance(mark, int | float) else None), auto


def apply_reviews(card: dict[str, Any], reviews: Iterable[Review], *, pass_mark: float | None = None,
                  auto_fail_criteria: Collection[str] = ()) -> dict[str, Any]:
    """The scorecard with a `review` section: reviewed verdicts, their history, reviewed score and verdict.

    The automatic fields are left as they are. Reviews of targets that are not on this scorecard
    (a rescore removed a violation) are kept in `review.stale`. The pass mark and the auto-fail
    criteria come from the arguments, else from the scorecard itself; without a pass mark the
    reviewed verdict can only keep the automatic one when nothing changed, so it is None otherwise.
    A provisional verdict stays provisional until a reviewer confirms it or rules on one of the
    criteria or violations that made it so.
    """
    out = copy.deepcopy(card)
    if pass_mark is None and isinstance(card.get("pass_mark"), int | float):
        pass_mark = float(card["pass_mark"])
    auto_fail_criteria = set(auto_fail_criteria) | {str(c.get("id")) for c in card.get("criteria") or []
                                                    if c.get("auto_fail")}
    ordered = sorted(reviews, key=lambda r: (r.created_at, r.id))
    history: dict[tuple[str, str], list[Review]] = {}
    for r in ordered:
        history.setdefault((r.target_kind, r.target_id), []).append(r)

    criteria = out.get("criteria") or []
    violations = out.get("violations") or []
    to_check = out.get("to_check") or []
    on_card = {("criterion", str(c.get("id"))) for c in criteria} | \
              {("violation", str(v.get("id"))) for v in violations} | \
              {("to_check", str(v.get("id"))) for v in to_check} | {("verdict", VERDICT_ID)}

    items: list[dict[str, Any]] = []
    reviewed_passes: dict[str, bool] = {}
    dismissed: set[str] = set()
    confirmed: set[str] = set()
    upheld: set[str] = set()  # violations a reviewer confirmed
    verdict_confirmed = False
    for (kind, target_id), rows in history.items():
        if (kind, target_id) not in on_card:
            continue
        last = rows[-1]
        if kind == "criterion":
            auto = next(bool(c.get("passed")) for c in criteria if str(c.get("id")) == target_id)
            reviewed = {"override_pass": True, "override_fail": False}.get(last.action, auto)
            if last.action != "restore":
                reviewed_passes[target_id] = reviewed
            automatic_verdict, reviewed_verdict = _word(auto), _word(reviewed)
        elif kind == "violation":
            automatic_verdict = "violation"
            reviewed_verdict = {"confirm": "confirmed", "dismiss": "dismissed"}.get(last.action, "violation")
            if last.action == "dismiss":
                dismissed.add(target_id)
            elif last.action == "confirm":
                upheld.add(target_id)
        elif kind == "to_check":
            automatic_verdict = "to check"
            reviewed_verdict = {"confirm": "violation", "dismiss": "dismissed"}.get(last.action, "to check")
            if last.action == "confirm":
                confirmed.add(target_id)
        else:
            automatic_verdict = "provisional" if card.get("provisional") else _word(bool(card.get("passed")))
            verdict_confirmed = last.action == "confirm"
            reviewed_verdict = "confirmed" if verdict_confirmed else automatic_verdict
        items.append({
            "target": kind, "id": target_id, "automatic": automatic_verdict, "reviewed": reviewed_verdict,
            "action": last.action, "reason": last.reason,
            "reviewer": {"key_id": last.reviewer_key_id, "name": last.reviewer_name},
            "at": last.created_at.isoformat(), "scorecard_version": last.scorecard_version,
            "history": [_step(r) for r in rows],
        })

    counted = [v for v in violations if str(v.get("id")) not in dismissed] + \
              [v for v in to_check if str(v.get("id")) in confirmed]
    # A reviewer who rules on a criterion says it applied to this call (`Line.ruled`).
    totals = retotal(criteria, counted, pass_mark=pass_mark, passes=reviewed_passes,
                     auto_fail_criteria=set(auto_fail_criteria))
    score, auto_fail = totals.score, totals.auto_fail
    changed = bool(reviewed_passes or dismissed or confirmed)
    passed = totals.passed if pass_mark is not None else bool(card.get("passed")) if not changed else None
    doubted = {str(r).split(":", 1)[0] for r in card.get("provisional_reasons") or []}
    resolved = verdict_confirmed or bool(doubted & (set(reviewed_passes) | dismissed | upheld))
    out["review"] = {
        "reviewed": bool(items),
        "items": items,
        "violations": [{"id": v.get("id"), "kind": v.get("kind"), "policy_id": v.get("policy_id"),
                        "auto_fail": bool(v.get("auto_fail")),
                        **({"consequence": v["consequence"], "deducted_points": v.get("deducted_points", 0.0)}
                           if v.get("consequence") else {})} for v in counted],
        "reviewed_score": round(score, 2) if changed else card.get("score"),
        "reviewed_deducted_points": round(totals.deducted, 2) if changed else
        card.get("deducted_points", 0.0),
        "reviewed_auto_fail": auto_fail if changed else bool(card.get("auto_fail")),
        "reviewed_passed": passed,
        "reviewed_provisional": bool(card.get("provisional")) and not resolved and passed is False,
        "stale": [_step(r) | {"target": k, "id": i} for (k, i), rows in history.items()
                  if (k, i) not in on_card for r in rows],
    }
    return out


def _word(passed: bool) -> str:
    return "pass" if passed else "fail"


def _step(r: Review) -> dict[str, Any]:
    return {"action": r.action, "reason": r.reason, "reviewer": r.reviewer_name,
            "reviewer_key_id": r.reviewer_key_id, "at": r.created_at.isoformat(),
            "scorecard_version": r.scorecard_version}


# -- sampling ----------------------------------------------------------------------------------

def parse_share(raw: str) -> float:
    """A review share as QA_REVIEW_SHARE gives it: a fraction or a percentage ("0.1", "10%"); blank is
    the default (10%)."""
    raw = raw.strip()
    if not raw:
        return DEFAULT_SHARE
    try:
        share = float(raw.rstrip("%")) / (100.0 if raw.endswith("%") else 1.0)
    except ValueError:
        raise ValueError(f"{SHARE_ENV} must be a number between 0 and 1 (or a percentage)") from None
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{SHARE_ENV} must be between 0 and 1 (or 0% and 100%)")
    return share


def sample_fraction(call_id: str, agent_id: str, call_date: date) -> float:
    """Where a call falls in [0, 1) within its agent's ISO week; the same inputs give the same number."""
    year, week, _ = call_date.isocalendar()
    digest = hashlib.sha256(f"{agent_id}\x1f{year}-W{week:02d}\x1f{call_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def needs_review(call_id: str, agent_id: str, call_date: date, auto_fail: bool,
                 share: float = DEFAULT_SHARE, *, to_check: bool = False, outdated: bool = False) -> bool:
    """Whether a call is marked for human review: every auto-fail, every call with items to check and
    every call with an outdated-policy mention, plus a deterministic sample."""
    return auto_fail or to_check or outdated or sample_fraction(call_id, agent_id, call_date) < share


def outdated_count(card: dict[str, Any]) -> int:
    """How many outdated-policy violations a scorecard lists: each sends the call to review, whatever
    its pack says it costs (those listed to check send it there as items to check)."""
    return sum(1 for v in card.get("violations") or [] if v.get("kind") == "outdated_policy")
