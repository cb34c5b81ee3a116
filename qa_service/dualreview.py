"""Dual review as pure functions: which calls need two reviewers who agree, and which reviews are final.

`QA_DUAL_REVIEW` names the calls whose reviewed verdict is final only when two different reviewers
agree: `auto_fail` (the machine auto-failed the call) and/or `high_risk` (the machine found an
outdated-policy or prohibited violation on it); empty: one reviewer decides, as before.

On such a call each reviewer's latest action on a target (a criterion, violation, item to check or
the verdict) is their vote. A target is settled when its most common vote has at least two reviewers
and more than any other vote; only settled targets change the reviewed verdict (and so the
aggregates). A target with one vote awaits a second reviewer; one whose votes tie (two reviewers who
disagree) awaits a third, whose vote breaks the tie. Until every reviewed target is settled the call
stays in the review queue (why `second_review`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from qa_service.review import Review

DUAL_REVIEW_ENV = "QA_DUAL_REVIEW"
DUAL_KINDS: tuple[str, ...] = ("auto_fail", "high_risk")


def parse_dual(raw: str) -> frozenset[str]:
    """The call kinds QA_DUAL_REVIEW names ("auto_fail", "high_risk", comma-separated; blank: none)."""
    words = {w.strip().lower() for w in raw.replace(";", ",").split(",") if w.strip()}
    unknown = sorted(words - set(DUAL_KINDS))
    if unknown:
        raise ValueError(f"{DUAL_REVIEW_ENV} names {', '.join(unknown)}; use {' and/or '.join(DUAL_KINDS)} "
                         f"(comma-separated), or leave it empty")
    return frozenset(words)


def needs_two(card: Mapping[str, Any], kinds: Iterable[str]) -> str | None:
    """Why the scorecard's reviewed verdict needs two reviewers who agree (`auto_fail`, `high_risk`), or
    None. Read from the automatic verdict: what the machine said decides how carefully it is checked."""
    kinds = set(kinds)
    if "auto_fail" in kinds and card.get("auto_fail"):
        return "auto_fail"
    if "high_risk" in kinds and any(v.get("kind") in ("outdated_policy", "prohibited")
                                    for v in card.get("violations") or []):
        return "high_risk"
    return None


def settle(reviews: Iterable[Review]) -> tuple[list[Review], list[dict[str, Any]]]:
    """The reviews that decide (per settled target, the latest review with the agreed action) and the
    targets still open, each with its votes and whether it awaits a second or a third reviewer."""
    latest: dict[tuple[str, str], dict[str, Review]] = {}
    for r in sorted(reviews, key=lambda r: (r.created_at, r.id)):
        latest.setdefault((r.target_kind, r.target_id), {})[r.reviewer_key_id] = r
    settled: list[Review] = []
    pending: list[dict[str, Any]] = []
    for (kind, target_id), votes in latest.items():
        ranked = Counter(r.action for r in votes.values()).most_common()
        top, count = ranked[0]
        if count >= 2 and (len(ranked) == 1 or ranked[1][1] < count):
            agreed = [r for r in votes.values() if r.action == top]
            settled.append(max(agreed, key=lambda r: (r.created_at, r.id)))
            continue
        pending.append({
            "target": kind, "id": target_id,
            "awaits": "second_reviewer" if len(votes) == 1 else "third_reviewer",
            "votes": [{"reviewer": r.reviewer_name, "reviewer_key_id": r.reviewer_key_id, "action": r.action,
                       "at": r.created_at.isoformat()} for r in votes.values()],
        })
    return settled, pending
