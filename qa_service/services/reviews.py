"""Human review: review a scorecard with a reason, read it reviewed, list the calls waiting for review."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime
from typing import Any

from qa_service.dualreview import needs_two, settle
from qa_service.errors import InputError, NotFound
from qa_service.rescore import Refresher, refresher_list
from qa_service.review import (
    Review,
    ReviewError,
    apply_reviews,
    check_review,
    has_target,
    needs_review,
    rubric_terms,
)
from qa_service.services.calls import readable_call
from qa_service.services.teams import Reach, reach
from qa_service.storage import paging
from qa_service.storage.paging import Paged
from qa_service.storage.repository import Repository, Scope, StoredKey, StoredScorecard
from qa_service.storage.review import QueueCandidate, QueueKey

# Roles that review scorecards (admin may do everything).
REVIEW = ("qa",)
# The review queue, oldest first: by call date, time received and call id.
QUEUE: paging.Listing[tuple[QueueKey, dict[str, Any]]] = paging.Listing(
    "review-queue", (date, datetime, str), lambda pair: pair[0], uuid_id=True)


class BadReview(InputError):
    """A review whose action does not fit its target, or without a reason (HTTP 422)."""


def may_review(role: str) -> bool:
    """Whether a role may review scorecards."""
    return role == "admin" or role in REVIEW


def reviewed_card(*, store: Repository, stored: StoredScorecard,
                  dual: Collection[str] = ()) -> dict[str, Any]:
    """A stored scorecard with its `review` section. The scorecard names its pass mark and auto-fail
    criteria; for one stored before it did, they are read from its rubric.

    `dual`: the call kinds under dual review (QA_DUAL_REVIEW). On such a call only what two reviewers
    agreed on counts, and `review.dual_review` names the targets that await a second (or third) reviewer.
    """
    pass_mark: float | None = None
    auto_fail: frozenset[str] = frozenset()
    if "pass_mark" not in stored.data:
        try:
            rubric = store.get_rules("rubric", stored.rubric_id, stored.rubric_version)
            pass_mark, auto_fail = rubric_terms(rubric.text)
        except NotFound:
            pass
    reviews = store.reviews.for_call(stored.call_id)
    why = needs_two(stored.data, dual)
    pending: list[dict[str, Any]] = []
    if why is not None:
        reviews, pending = settle(reviews)
    card = apply_reviews(stored.data, reviews, pass_mark=pass_mark, auto_fail_criteria=auto_fail)
    card["review"]["scorecard_version"] = stored.version
    if why is not None:
        card["review"]["dual_review"] = {
            "required": True, "why": why, "final": not pending, "pending": pending,
            "note": "the reviewed verdict awaits a second reviewer" if pending else None}
    return card


def add_review(*, store: Repository, key: StoredKey, call_id: str, target: str, target_id: str, action: str,
               reason: str, dual: Collection[str] = ()) -> tuple[Review, dict[str, Any]]:
    """Check and store a review of the call's latest scorecard; the review and the reviewed scorecard
    (under dual review, `dual`, the verdict it leaves counts only what two reviewers agreed on)."""
    try:
        check_review(target, action, reason)
    except ReviewError as exc:
        raise BadReview(str(exc)) from None
    call = readable_call(store, key, call_id)  # a scoped reviewer reviews its teams' calls only
    stored = store.get_scorecard(call.id)
    if not has_target(stored.data, target, target_id):
        what = {"to_check": "item to check"}.get(target, target)
        raise NotFound(f"the call's scorecard has no {what} {target_id!r}")
    review = store.reviews.add(Review(
        call_id=stored.call_id, scorecard_version=stored.version, target_kind=target,  # type: ignore[arg-type]
        target_id=target_id, action=action, reason=reason.strip(),  # type: ignore[arg-type]
        reviewer_key_id=key.id, reviewer_name=key.name, created_at=datetime.now(UTC)))
    card = reviewed_card(store=store, stored=stored, dual=dual)
    store.reviews.set_reviewed(stored.call_id, stored.version, card["review"])
    return review, card


def call_reviews(*, store: Repository, key: StoredKey, call_id: str) -> list[Review]:
    """Every review of a call, oldest first (NotFound for a call that does not exist or the key may not
    read)."""
    return store.reviews.for_call(readable_call(store, key, call_id).id)


def review_queue(*, store: Repository, key: StoredKey, share: float, agent_id: str | None = None,
                 date_from: date | None = None, date_to: date | None = None, why: str | None = None,
                 group: Scope | None = None, cursor: str | None = None,
                 page_size: int = paging.DEFAULT_PAGE_SIZE) -> Paged[dict[str, Any]]:
    """One page of the calls marked for review and not reviewed yet, oldest first (call date, time
    received, call id), after the call the cursor names: every call with an open dispute of its agent
    (reviewed or not), every provisional verdict, every call with an outdated-policy mention, every
    auto-fail, every call with items to check or findings (a lapsed certification), plus each agent's
    weekly sample of `share`; and, under dual review, every call whose reviewer's verdict awaits a second
    (or third) reviewer (`second_review`). `why` names the first of these that holds, and narrows the
    queue to it when given; `group` narrows it to the calls of agents in a team or vendor on the call's
    date. A scoped key gets its teams' calls only, on every page. InputError for a cursor the queue did
    not give."""
    if date_from and date_to and date_from > date_to:
        raise InputError("'from' is after 'to'")
    page_size = paging.page_size_within(page_size)
    after = QUEUE.after(cursor)
    inside = reach(store, key)
    wanted = Reach(store, group) if group is not None else None
    # Whether a call waits is decided here, after the read: read on in the queue's order until one call
    # more than the page waits (it says another page follows).
    found: list[tuple[QueueKey, dict[str, Any]]] = []
    for c in store.reviews.queue_candidates(agent_id, date_from, date_to, after):
        if not inside.call(c.agent_id, c.call_date) or (wanted is not None and
                                                        not wanted.call(c.agent_id, c.call_date)):
            continue
        item = _waiting(c, share)
        if item is None or (why is not None and item["why"] != why):
            continue
        found.append((c.key, item))
        if len(found) > page_size:
            break
    shown = QUEUE.page(found, page_size)
    return Paged(items=[item for _, item in shown.items], page_size=page_size, next_cursor=shown.next_cursor)


def _waiting(c: QueueCandidate, share: float) -> dict[str, Any] | None:
    """The queue's row for a candidate that waits for review, with why; None when it does not wait."""
    # An agent's open dispute waits for QA whether or not the call was reviewed before.
    if not (c.disputes or c.second_review or needs_review(
            c.call_id, c.agent_id, c.call_date, c.auto_fail, share,
            to_check=c.to_check > 0 or c.provisional or c.findings > 0, outdated=c.outdated > 0)):
        return None
    why = "dispute" if c.disputes else "second_review" if c.second_review else \
        "provisional" if c.provisional else \
        "outdated_policy" if c.outdated else \
        "auto_fail" if c.auto_fail else "to_check" if c.to_check else \
        "finding" if c.findings else "sampled"
    return {"call_id": c.call_id, "agent_id": c.agent_id, "call_date": c.call_date.isoformat(),
            "scorecard_version": c.version, "score": c.score, "passed": c.passed,
            "auto_fail": c.auto_fail, "provisional": c.provisional, "to_check": c.to_check,
            "outdated": c.outdated, "findings": c.findings, "disputes": c.disputes, "why": why}


def page_review(*, store: Repository, stored: StoredScorecard, dual: Collection[str] = ()) -> dict[str, Any]:
    """What a call's page shows of the reviews: reviewed verdicts by criterion, violation and item to
    check id, the verdict's review, and whether the verdict is still provisional."""
    section = reviewed_card(store=store, stored=stored, dual=dual)["review"]
    items = section["items"]
    return {
        "criteria": {i["id"]: i for i in items if i["target"] == "criterion"},
        "violations": {i["id"]: i for i in items if i["target"] == "violation"},
        "to_check": {i["id"]: i for i in items if i["target"] == "to_check"},
        "verdict": next((i for i in items if i["target"] == "verdict"), None),
        "reviewed": section["reviewed"], "score": section["reviewed_score"],
        "passed": section["reviewed_passed"], "auto_fail": section["reviewed_auto_fail"],
        "provisional": section["reviewed_provisional"],
        "dual_review": section.get("dual_review"),
    }


def policy_currency(*, store: Repository, key: StoredKey, date_from: date | None = None,
                    date_to: date | None = None, agent_id: str | None = None,
                    dual: Collection[str] = ()) -> tuple[int, Refresher]:
    """How many calls were read, and the refresher list as reviewed: per agent and policy fact, the
    outdated mentions that count (dismissed ones left out, confirmed items to check in), each saying
    whether a reviewer confirmed it."""
    # The stored row's agent and date are the call's, whatever the scorecard's JSON says.
    inside = reach(store, key)
    cards = [(s.call_id, {**s.data, "agent_id": s.agent_id, "call_date": s.call_date.isoformat()})
             for s in store.latest_scorecards(date_from, date_to)
             if (agent_id is None or s.agent_id == agent_id) and inside.call(s.agent_id, s.call_date)]
    reviewed = store.reviews.reviewed_call_ids([call_id for call_id, _ in cards])
    read = [(call_id, apply_reviews(card, _counted(store, call_id, card, dual)) if call_id in reviewed
             else card) for call_id, card in cards]
    return len(cards), refresher_list(read)


def _counted(store: Repository, call_id: str, card: dict[str, Any], dual: Collection[str]) -> list[Review]:
    """The reviews of a call that count: all of them, or under dual review those two reviewers agreed on."""
    reviews = store.reviews.for_call(call_id)
    return settle(reviews)[0] if needs_two(card, dual) else reviews
