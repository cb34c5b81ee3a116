"""Storage of scorecard reviews and the audit log, as functions over the repository's engine.

Both tables only ever grow: a review is never edited (a later review of the same target supersedes
it and the earlier one stays as history), and audit rows are never changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from qa_service.errors import NotFound
from qa_service.review import Review
from qa_service.storage import paging, rollups
from qa_service.storage import tables as t
from qa_service.storage.db import writing
from qa_service.storage.repository import canonical_uuid

DETAILS_MAX = 200
# Targets whose ids are UUIDs: stored in their usual form, however the request wrote them, so a search
# by the usual id finds a read made with the id in capitals or without hyphens.
UUID_TARGETS = frozenset({"call", "key", "rescore"})


@dataclass(frozen=True)
class AuditEntry:
    """One audit row: who (key id, name, role) did what (action) to which target, when."""

    at: datetime
    key_id: str | None
    key_name: str | None
    role: str | None
    action: str
    target_kind: str | None
    target_id: str | None
    details: str | None
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "at": self.at.isoformat(), "key_id": self.key_id, "key_name": self.key_name,
                "role": self.role, "action": self.action, "target_kind": self.target_kind,
                "target_id": self.target_id, "details": self.details}


# A call's place in the review queue's order (oldest first).
QueueKey = paging.CallKey


@dataclass(frozen=True)
class QueueCandidate:
    """A call's latest scorecard facts that decide whether it is marked for review."""

    call_id: str
    agent_id: str
    call_date: date
    received_at: datetime  # when the call was received: the queue's order after its call date
    version: int
    score: float
    passed: bool
    auto_fail: bool
    to_check: int = 0
    provisional: bool = False
    outdated: int = 0  # outdated-policy violations
    findings: int = 0
    disputes: int = 0  # open disputes of the agent: the call waits for QA even when it was reviewed
    second_review: bool = False  # under dual review: a reviewer's verdict awaits a second reviewer

    @property
    def key(self) -> QueueKey:
        """The call's place in the queue's order."""
        return self.call_date, self.received_at, self.call_id


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_review(engine: Engine, review: Review) -> Review:
    """Store a review of a call's scorecard; NotFound when the call does not exist."""
    values = {
        "call_id": review.call_id, "scorecard_version": review.scorecard_version,
        "target_kind": review.target_kind, "target_id": review.target_id, "action": review.action,
        "reason": review.reason, "reviewer_key_id": review.reviewer_key_id,
        "reviewer_name": review.reviewer_name, "created_at": review.created_at,
    }
    with writing(engine) as conn:
        if conn.execute(sa.select(t.calls.c.id).where(t.calls.c.id == review.call_id)).first() is None:
            raise NotFound(f"no call with id {review.call_id!r}")
        new_id = conn.execute(t.reviews.insert().values(**values).returning(t.reviews.c.id)).scalar_one()
    return dataclasses.replace(review, created_at=_utc(review.created_at), id=int(new_id))


def set_reviewed(engine: Engine, call_id: str, version: int, review: dict[str, Any]) -> None:
    """Keep a scorecard version's verdict after reviews (the `review` section `apply_reviews` gives)
    where the aggregates read it: the reviewed score, pass, auto-fail and violations when a reviewer
    changed any, and whether the verdict is still provisional."""
    changed = any(item["reviewed"] != item["automatic"] for item in review.get("items") or []
                  if item["target"] != "verdict")
    dual = review.get("dual_review") or {}
    values: dict[str, Any] = {"provisional": bool(review.get("reviewed_provisional")),
                              "second_review": bool(dual.get("pending"))}
    values |= {"reviewed_score": review.get("reviewed_score"),
               "reviewed_passed": review.get("reviewed_passed"),
               "reviewed_auto_fail": review.get("reviewed_auto_fail"),
               "reviewed_violations": review.get("violations")} if changed else \
        dict.fromkeys(("reviewed_score", "reviewed_passed", "reviewed_auto_fail")) | \
        {"reviewed_violations": sa.null()}  # SQL NULL: a JSON column would store None as JSON 'null'
    # (which the views' COALESCE takes for a list of violations).
    sc = t.scorecards
    with writing(engine) as conn, rollups.kept(conn, [call_id]):
        conn.execute(sc.update().where(sc.c.call_id == call_id, sc.c.version == version).values(**values))


def call_reviews(engine: Engine, call_id: str) -> list[Review]:
    """Every review of a call, oldest first."""
    r = t.reviews
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r).where(r.c.call_id == call_id).order_by(r.c.id)).mappings().all()
    return [_review(row) for row in rows]


def reviewed_call_ids(engine: Engine, call_ids: list[str]) -> set[str]:
    """Which of these calls have at least one review."""
    found: set[str] = set()
    with engine.connect() as conn:
        for k in range(0, len(call_ids), 500):
            chunk = call_ids[k:k + 500]
            query = sa.select(t.reviews.c.call_id).where(t.reviews.c.call_id.in_(chunk)).distinct()
            found.update(str(x) for x in conn.execute(query).scalars())
    return found


def queue_candidates(engine: Engine, agent_id: str | None = None, date_from: date | None = None,
                     date_to: date | None = None, after: QueueKey | None = None,
                     batch: int = 500) -> Iterator[QueueCandidate]:
    """The latest scorecard of each call not yet reviewed, with an open dispute, or whose reviewer's
    verdict awaits a second reviewer (optionally one agent's, in a date range), oldest first: by call
    date, time received and call id, strictly after the `after` key. Read in keyset batches, so a reader
    that stops early (a page of the queue) reads little, and a deep page does not read the ones before."""
    c, sc, d = t.calls, t.scorecards, t.disputes
    reviewed = sa.select(t.reviews.c.id).where(t.reviews.c.call_id == sc.c.call_id).exists()
    disputes = (sa.select(sa.func.count()).where(d.c.call_id == sc.c.call_id, d.c.status == "open")
                .scalar_subquery())
    conds: list[Any] = [sc.c.latest, sa.or_(~reviewed, disputes > 0, sc.c.second_review)]
    if agent_id is not None:
        conds.append(sc.c.agent_id == agent_id)
    if date_from is not None:
        conds.append(sc.c.call_date >= date_from)
    if date_to is not None:
        conds.append(sc.c.call_date <= date_to)
    order = (c.c.call_date, c.c.created_at, c.c.id)
    query = (sa.select(*order, sc.c.agent_id, sc.c.version, sc.c.score, sc.c.passed, sc.c.auto_fail,
                       sc.c.to_check, sc.c.provisional, sc.c.outdated, sc.c.findings, disputes,
                       sc.c.second_review)
             .select_from(sc.join(c, c.c.id == sc.c.call_id)).where(*conds))
    while True:
        narrowed = query if after is None else paging.after(query, order, after, descending=False)
        with engine.connect() as conn:
            rows = conn.execute(narrowed.order_by(*order).limit(batch)).all()
        found = [_candidate(row) for row in rows]
        yield from found
        if len(found) < batch:
            return
        after = found[-1].key


def _candidate(row: Any) -> QueueCandidate:
    """A queue candidate from a row of `queue_candidates`' query."""
    return QueueCandidate(call_id=str(row[2]), agent_id=row[3], call_date=row[0], received_at=_utc(row[1]),
                          version=int(row[4]), score=float(row[5]), passed=bool(row[6]),
                          auto_fail=bool(row[7]), to_check=int(row[8]), provisional=bool(row[9]),
                          outdated=int(row[10]), findings=int(row[11]), disputes=int(row[12]),
                          second_review=bool(row[13]))

def audit(engine: Engine, action: str, *, key_id: str | None = None, key_name: str | None = None,
          role: str | None = None, target_kind: str | None = None, target_id: str | None = None,
          details: str | None = None, at: datetime | None = None) -> None:
    """Append one row to the audit log (details are cut to a short line; never pass personal data)."""
    if target_id and target_kind in UUID_TARGETS:
        target_id = canonical_uuid(target_id) or target_id
    values = {"at": at or datetime.now(UTC), "key_id": key_id, "key_name": key_name, "role": role,
              "action": action, "target_kind": target_kind,
              "target_id": target_id[:200] if target_id else target_id,
              "details": details[:DETAILS_MAX] if details else details}
    with writing(engine) as conn:
        conn.execute(t.audit_log.insert().values(**values))


def audit_entries(engine: Engine, *, target_id: str | None = None, key_id: str | None = None,
                  action: str | None = None, since: datetime | None = None, until: datetime | None = None,
                  after: tuple[datetime, int] | None = None, limit: int = 1000) -> list[AuditEntry]:
    """Audit rows, newest first by (time, id), filtered by target (a call, agent, key or rules id), key,
    action and time range, from the row after the key `after` when given."""
    a = t.audit_log
    conds: list[Any] = []
    if target_id is not None:
        # An id written as a UUID in another form also finds the rows stored in the usual one.
        conds.append(a.c.target_id.in_(sorted({target_id, canonical_uuid(target_id) or target_id})))
    if key_id is not None:
        conds.append(a.c.key_id == (canonical_uuid(key_id) or key_id))
    if action is not None:
        conds.append(a.c.action == action)
    if since is not None:
        conds.append(a.c.at >= since)
    if until is not None:
        conds.append(a.c.at <= until)
    order = (a.c.at, a.c.id)
    query = sa.select(a).where(*conds)
    if after is not None:
        query = paging.after(query, order, after, descending=True)
    query = query.order_by(*(col.desc() for col in order)).limit(limit)
    with engine.connect() as conn:
        return [AuditEntry(id=int(r["id"]), at=_utc(r["at"]), key_id=r["key_id"], key_name=r["key_name"],
                           role=r["role"], action=r["action"], target_kind=r["target_kind"],
                           target_id=r["target_id"], details=r["details"])
                for r in conn.execute(query).mappings()]


def _review(row: Any) -> Review:
    return Review(id=int(row["id"]), call_id=str(row["call_id"]),
                  scorecard_version=int(row["scorecard_version"]),
                  target_kind=row["target_kind"], target_id=row["target_id"], action=row["action"],
                  reason=row["reason"], reviewer_key_id=str(row["reviewer_key_id"]),
                  reviewer_name=row["reviewer_name"], created_at=_utc(row["created_at"]))


class SqlReviews:
    """`ReviewStore` over the SQL database: reviews of scorecards and the verdicts they leave."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def add(self, review: Review) -> Review:
        """Store a review; NotFound when its call does not exist."""
        return add_review(self._engine, review)

    def set_reviewed(self, call_id: str, version: int, review: dict[str, Any]) -> None:
        """Keep a scorecard version's reviewed verdict where the aggregates read it."""
        set_reviewed(self._engine, call_id, version, review)

    def for_call(self, call_id: str) -> list[Review]:
        """Every review of a call, oldest first."""
        return call_reviews(self._engine, call_id)

    def reviewed_call_ids(self, call_ids: list[str]) -> set[str]:
        """Which of these calls have at least one review."""
        return reviewed_call_ids(self._engine, call_ids)

    def queue_candidates(self, agent_id: str | None = None, date_from: date | None = None,
                         date_to: date | None = None,
                         after: QueueKey | None = None) -> Iterator[QueueCandidate]:
        """The latest scorecard of each call waiting for review, oldest first, after the `after` key."""
        return queue_candidates(self._engine, agent_id, date_from, date_to, after)


class SqlAudit:
    """`AuditLog` over the SQL database: rows are appended, never changed."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def record(self, action: str, *, key_id: str | None = None, key_name: str | None = None,
               role: str | None = None, target_kind: str | None = None, target_id: str | None = None,
               details: str | None = None, at: datetime | None = None) -> None:
        """Append one row (details are cut to a short line; never pass personal data)."""
        audit(self._engine, action, key_id=key_id, key_name=key_name, role=role, target_kind=target_kind,
              target_id=target_id, details=details, at=at)

    def entries(self, *, target_id: str | None = None, key_id: str | None = None, action: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                after: tuple[datetime, int] | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Rows, newest first by (time, id), filtered by target, key, action and time range, from the row
        after the key `after` when given."""
        return audit_entries(self._engine, target_id=target_id, key_id=key_id, action=action, since=since,
                             until=until, after=after, limit=limit)
