"""Agents and their scorecards: acknowledge one, dispute a criterion or violation, QA resolves.

- Only an agent's key (`Scope(agent=...)`) acknowledges and disputes, and only its own calls
  (`readable_call`: another agent's call is answered as one that does not exist).
- A dispute names a criterion that failed or a violation that counts on the call's latest scorecard
  (as reviewed), with a reason, within `QA_DISPUTE_WINDOW_DAYS` (default 7) of the scorecard being
  stored; one open dispute per target.
- QA (qa and admin keys, inside their scope) resolves it: upheld (the verdict stands; nothing else
  changes) or overturned, which stores a review of the target (`override_pass` for a criterion,
  `dismiss` for a violation) in the same transaction, so the reviewed score, verdict and aggregates
  change through the one totals rule (`review.apply_reviews`). The dispute and its resolution are kept.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from qa_service.errors import Conflict, Forbidden, InputError, NotFound
from qa_service.review import MAX_REASON_CHARS, Review, has_target
from qa_service.services.calls import readable_call
from qa_service.services.reviews import may_review, reviewed_card
from qa_service.services.teams import scoped
from qa_service.storage import listings, paging
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, Paged
from qa_service.storage.repository import (
    DISPUTE_TARGETS,
    Acknowledgement,
    AlreadyResolved,
    Dispute,
    Repository,
    StoredKey,
    StoredScorecard,
)
from qa_service.storage.views import Filters, OverturnRate

OUTCOMES = ("upheld", "overturned")
# What an overturn does to each kind of target: the agent-favourable verdict.
OVERTURN_ACTION = {"criterion": "override_pass", "violation": "dismiss"}


class BadDispute(InputError):
    """A dispute or resolution without a reason, or of a target that cannot be disputed (HTTP 422)."""


class WindowClosed(Conflict):
    """The scorecard is older than the dispute window (HTTP 409)."""


class NotDisputable(Conflict):
    """The target already stands in the agent's favour: a criterion that passed, a dismissed violation."""


def own_agent(key: StoredKey) -> str:
    """The agent an agent's key is bound to; Forbidden for every other key."""
    if key.scope is None or key.scope.agent is None:
        raise Forbidden("only the agent's own key acknowledges or disputes a scorecard")
    return key.scope.agent


def _reason(reason: str, what: str) -> str:
    reason = reason.strip()
    if not reason:
        raise BadDispute(f"{what} needs a reason")
    if len(reason) > MAX_REASON_CHARS:
        raise BadDispute(f"a reason is limited to {MAX_REASON_CHARS:,} characters "
                         f"(this one has {len(reason):,})")
    return reason


def _scorecard(store: Repository, key: StoredKey, call_id: str) -> StoredScorecard:
    call = readable_call(store, key, call_id)
    if call.status != "done":
        raise Conflict(f"the call is {call.status}: there is no scorecard to acknowledge or dispute yet")
    return store.get_scorecard(call.id)


def acknowledge(*, store: Repository, key: StoredKey, call_id: str,
                now: datetime | None = None) -> tuple[Acknowledgement, bool]:
    """The agent acknowledges the call's latest scorecard: the acknowledgement and whether it is new (an
    acknowledged version stays acknowledged as first recorded)."""
    agent = own_agent(key)
    stored = _scorecard(store, key, call_id)
    return store.disputes.acknowledge(Acknowledgement(
        call_id=stored.call_id, scorecard_version=stored.version, agent_id=agent, key_id=key.id,
        key_name=key.name, created_at=now or datetime.now(UTC)))


def window_closes(stored: StoredScorecard, window_days: float) -> datetime:
    """When the dispute window of a scorecard version closes."""
    return stored.created_at + timedelta(days=window_days)


def raise_dispute(*, store: Repository, key: StoredKey, call_id: str, target: str, target_id: str,
                  reason: str, window_days: float, now: datetime | None = None) -> Dispute:
    """The agent disputes a failed criterion or a counted violation of the call's latest scorecard."""
    agent = own_agent(key)
    if target not in DISPUTE_TARGETS:
        raise BadDispute(f"a dispute names a {' or a '.join(DISPUTE_TARGETS)}")
    reason = _reason(reason, "a dispute")
    stored = _scorecard(store, key, call_id)
    now = now or datetime.now(UTC)
    closes = window_closes(stored, window_days)
    if now > closes:
        raise WindowClosed(f"the dispute window of this scorecard closed on {closes:%Y-%m-%d %H:%M} UTC "
                           f"({window_days:g} days after it was stored; QA_DISPUTE_WINDOW_DAYS)")
    if not has_target(stored.data, target, target_id):
        raise NotFound(f"the call's scorecard has no {target} {target_id!r}")
    items = reviewed_card(store=store, stored=stored)["review"]["items"]
    item = next((i for i in items if (i["target"], i["id"]) == (target, target_id)), None)
    if target == "criterion":
        crit = next(c for c in stored.data.get("criteria") or [] if str(c.get("id")) == target_id)
        if (item["reviewed"] == "pass") if item else bool(crit.get("passed")):
            raise NotDisputable(f"criterion {target_id!r} passed: there is nothing to dispute")
        if item is None and not crit.get("applicable", True):
            raise NotDisputable(f"criterion {target_id!r} did not apply to this call: it costs nothing")
    elif item is not None and item["reviewed"] == "dismissed":
        raise NotDisputable(f"violation {target_id!r} was dismissed already: it does not count")
    return store.disputes.add(Dispute(
        call_id=stored.call_id, scorecard_version=stored.version, rubric_id=stored.rubric_id, agent_id=agent,
        call_date=stored.call_date, target_kind=target, target_id=target_id, reason=reason,
        raised_by_key_id=key.id, raised_by_name=key.name, created_at=now))


def resolve_dispute(*, store: Repository, key: StoredKey, dispute_id: int, outcome: str, reason: str,
                    now: datetime | None = None,
                    dual: Collection[str] = ()) -> tuple[Dispute, dict[str, Any] | None]:
    """QA resolves an open dispute: upheld changes nothing; overturned stores a review of the target (the
    reviewed scorecard is returned). NotFound outside the reviewer's scope, as for no such dispute."""
    if not may_review(key.role):
        raise Forbidden("only QA reviewers resolve disputes")
    if outcome not in OUTCOMES:
        raise BadDispute(f"a dispute is resolved as {' or '.join(OUTCOMES)}")
    reason = _reason(reason, "a resolution")
    dispute = store.disputes.get(dispute_id)
    try:
        readable_call(store, key, dispute.call_id)
    except NotFound:
        raise NotFound(f"no dispute with id {dispute_id}") from None
    if dispute.status != "open":
        raise AlreadyResolved(f"dispute {dispute_id} was {dispute.status} already")
    now = now or datetime.now(UTC)
    review = stored = None
    if outcome == "overturned":
        stored = store.get_scorecard(dispute.call_id)
        if not has_target(stored.data, dispute.target_kind, dispute.target_id):
            raise Conflict(f"the call's latest scorecard (version {stored.version}) has no "
                           f"{dispute.target_kind} {dispute.target_id!r} any more: uphold the dispute, or "
                           "review the call")
        review = Review(call_id=stored.call_id, scorecard_version=stored.version,
                        target_kind=dispute.target_kind,  # type: ignore[arg-type]
                        target_id=dispute.target_id,
                        action=OVERTURN_ACTION[dispute.target_kind],  # type: ignore[arg-type]
                        reason=reason, reviewer_key_id=key.id, reviewer_name=key.name, created_at=now)
    resolved = store.disputes.resolve(dispute_id, outcome=outcome,  # type: ignore[arg-type]
                                      reason=reason, key_id=key.id, key_name=key.name, at=now, review=review)
    if stored is None:
        return resolved, None
    # Under dual review (`dual`, QA_DUAL_REVIEW) an overturn is one reviewer's vote, as any review.
    card = reviewed_card(store=store, stored=stored, dual=dual)
    store.reviews.set_reviewed(stored.call_id, stored.version, card["review"])
    return resolved, card


def call_disputes(*, store: Repository, key: StoredKey,
                  call_id: str) -> tuple[list[Acknowledgement], list[Dispute]]:
    """A call's acknowledgements and disputes with their resolutions, oldest first."""
    call = readable_call(store, key, call_id)
    return store.disputes.acknowledgements(call.id), store.disputes.for_call(call.id)


def list_disputes(*, store: Repository, key: StoredKey, status: str | None = None,
                  agent_id: str | None = None, cursor: str | None = None,
                  page_size: int = DEFAULT_PAGE_SIZE) -> Paged[Dispute]:
    """One page of the disputes the key may read (its scope's calls; an agent's key: its own), oldest
    first, after the dispute the cursor names; InputError for a cursor this listing did not give."""
    page_size = paging.page_size_within(page_size)
    rows = store.disputes.listing(status=status, agent_id=agent_id, scope=key.scope,
                                  after=listings.DISPUTES.after(cursor), limit=page_size + 1)
    return listings.DISPUTES.page(rows, page_size)


def overturn_rates(*, store: Repository, key: StoredKey, f: Filters) -> list[OverturnRate]:
    """Disputes per rubric and criterion or violation id over the calls the key may read, most often
    overturned first."""
    return store.views.overturn_rates(scoped(key, f))
