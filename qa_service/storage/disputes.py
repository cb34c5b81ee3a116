"""Agents' acknowledgements and disputes of scorecards in the SQL database.

Both only grow but for a dispute's one resolution (open -> upheld | overturned), written by an update
that holds only while the dispute is still open, in the transaction that stores the overturn's review:
two reviewers resolving at once cannot both win, and a dispute is never overturned without its review.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from qa_service.errors import NotFound
from qa_service.review import Review
from qa_service.storage import paging
from qa_service.storage import tables as t
from qa_service.storage.db import utc, writing
from qa_service.storage.repository import (
    Acknowledgement,
    AlreadyResolved,
    Dispute,
    DisputeOpen,
    DisputeStatus,
    Scope,
)
from qa_service.storage.teams import member_on


class SqlDisputes:
    """`DisputeStore` over the SQL database."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def acknowledge(self, ack: Acknowledgement) -> tuple[Acknowledgement, bool]:
        """Store an acknowledgement of a scorecard version; the stored one and False when there is one."""
        a = t.acknowledgements
        found = self._ack(ack.call_id, ack.scorecard_version)
        if found is not None:
            return found, False
        try:
            with writing(self._engine) as conn:
                conn.execute(a.insert().values(
                    call_id=ack.call_id, scorecard_version=ack.scorecard_version, agent_id=ack.agent_id,
                    key_id=ack.key_id, key_name=ack.key_name, created_at=ack.created_at))
        except IntegrityError:  # acknowledged at the same moment from another tab
            found = self._ack(ack.call_id, ack.scorecard_version)
            if found is None:
                raise
            return found, False
        return dataclasses.replace(ack, created_at=utc(ack.created_at)), True

    def _ack(self, call_id: str, version: int) -> Acknowledgement | None:
        a = t.acknowledgements
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(a).where(a.c.call_id == call_id, a.c.scorecard_version == version)
                               ).mappings().first()
        return _acknowledgement(row) if row is not None else None

    def acknowledgements(self, call_id: str) -> list[Acknowledgement]:
        """A call's acknowledgements, oldest version first."""
        a = t.acknowledgements
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(a).where(a.c.call_id == call_id).order_by(a.c.scorecard_version)
                                ).mappings().all()
        return [_acknowledgement(r) for r in rows]

    def add(self, dispute: Dispute) -> Dispute:
        """Store an open dispute; DisputeOpen when the target already has one open."""
        d = t.disputes
        values = {f.name: getattr(dispute, f.name) for f in dataclasses.fields(Dispute) if f.name != "id"}
        try:
            with writing(self._engine) as conn:
                new_id = conn.execute(d.insert().values(**values).returning(d.c.id)).scalar_one()
        except IntegrityError:
            if self._open_on(dispute.call_id, dispute.target_kind, dispute.target_id):
                raise DisputeOpen(f"this {dispute.target_kind} already has an open dispute") from None
            raise
        return self.get(int(new_id))

    def _open_on(self, call_id: str, kind: str, target_id: str) -> bool:
        d = t.disputes
        with self._engine.connect() as conn:
            return conn.execute(sa.select(d.c.id).where(
                d.c.call_id == call_id, d.c.target_kind == kind, d.c.target_id == target_id,
                d.c.status == "open")).first() is not None

    def get(self, dispute_id: int) -> Dispute:
        """The dispute with this id, or NotFound (an id past the database's integers names none)."""
        if not 1 <= dispute_id < 2**63:
            raise NotFound(f"no dispute with id {dispute_id}")
        d = t.disputes
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(d).where(d.c.id == dispute_id)).mappings().first()
        if row is None:
            raise NotFound(f"no dispute with id {dispute_id}")
        return _dispute(row)

    def resolve(self, dispute_id: int, *, outcome: DisputeStatus, reason: str, key_id: str, key_name: str,
                at: datetime, review: Review | None = None) -> Dispute:
        """Resolve an open dispute, storing the overturn's review in the same transaction; AlreadyResolved
        when it is no longer open, NotFound when there is none."""
        d, r = t.disputes, t.reviews
        with writing(self._engine) as conn:
            done = conn.execute(d.update().where(d.c.id == dispute_id, d.c.status == "open").values(
                status=outcome, resolution_reason=reason, resolved_by_key_id=key_id,
                resolved_by_name=key_name, resolved_at=at))
            if done.rowcount == 0:
                if conn.execute(sa.select(d.c.id).where(d.c.id == dispute_id)).first() is None:
                    raise NotFound(f"no dispute with id {dispute_id}")
                raise AlreadyResolved(f"dispute {dispute_id} is already resolved")
            if review is not None:
                review_id = conn.execute(r.insert().values(
                    call_id=review.call_id, scorecard_version=review.scorecard_version,
                    target_kind=review.target_kind, target_id=review.target_id, action=review.action,
                    reason=review.reason, reviewer_key_id=review.reviewer_key_id,
                    reviewer_name=review.reviewer_name, created_at=review.created_at).returning(r.c.id)
                ).scalar_one()
                conn.execute(d.update().where(d.c.id == dispute_id).values(review_id=int(review_id)))
        return self.get(dispute_id)

    def for_call(self, call_id: str) -> list[Dispute]:
        """A call's disputes, oldest first."""
        d = t.disputes
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(d).where(d.c.call_id == call_id).order_by(d.c.id)).mappings().all()
        return [_dispute(r) for r in rows]

    def listing(self, *, status: str | None = None, agent_id: str | None = None, scope: Scope | None = None,
                after: tuple[datetime, int] | None = None, limit: int = 500) -> list[Dispute]:
        """Disputes (with a status, of one agent, inside a scope), oldest first by (created time, id),
        from the one after the key `after` when given."""
        d = t.disputes
        order = (d.c.created_at, d.c.id)
        query = sa.select(d)
        if status is not None:
            query = query.where(d.c.status == status)
        if agent_id is not None:
            query = query.where(d.c.agent_id == agent_id)
        if scope is not None:
            # In the query, before the limit: a page holds as many of the scope's disputes as it can.
            query = query.where(d.c.agent_id == scope.agent if scope.agent is not None
                                else member_on(d.c.agent_id, d.c.call_date, scope))
        if after is not None:
            query = paging.after(query, order, after, descending=False)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(*order).limit(limit)).mappings()
            return [_dispute(r) for r in rows]


def _acknowledgement(row: Any) -> Acknowledgement:
    return Acknowledgement(call_id=str(row["call_id"]), scorecard_version=int(row["scorecard_version"]),
                           agent_id=row["agent_id"], key_id=row["key_id"], key_name=row["key_name"],
                           created_at=utc(row["created_at"]))


def _dispute(row: Any) -> Dispute:
    return Dispute(id=int(row["id"]), call_id=str(row["call_id"]),
                   scorecard_version=int(row["scorecard_version"]), rubric_id=row["rubric_id"],
                   agent_id=row["agent_id"], call_date=row["call_date"], target_kind=row["target_kind"],
                   target_id=row["target_id"], reason=row["reason"], raised_by_key_id=row["raised_by_key_id"],
                   raised_by_name=row["raised_by_name"], created_at=utc(row["created_at"]),
                   status=row["status"],
                   resolution_reason=row["resolution_reason"], resolved_by_key_id=row["resolved_by_key_id"],
                   resolved_by_name=row["resolved_by_name"],
                   resolved_at=utc(row["resolved_at"]) if row["resolved_at"] is not None else None,
                   review_id=row["review_id"])
