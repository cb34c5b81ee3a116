"""Certifications and training records of agents in the SQL database.

An import is one transaction: a file with one bad line was refused before it got here, and a file
that fails half-way (a lost connection) leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine

from qa_service.storage import paging
from qa_service.storage import tables as t
from qa_service.storage.db import utc_now, writing
from qa_service.storage.listings import CERTIFICATIONS, EXPIRING, LAPSED, TRAINING
from qa_service.storage.paging import Paged
from qa_service.storage.repository import (
    Certification,
    ImportCounts,
    Scope,
    TrainingRecord,
    canonical_uuid,
)
from qa_service.storage.teams import reached

T = TypeVar("T")


class SqlCertification:
    """`CertificationStore` over the SQL database."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def import_certifications(self, items: Sequence[Certification]) -> ImportCounts:
        """Store certifications in one transaction (one row per agent, name and issue date; a changed
        row replaces the stored one)."""
        c = t.certifications
        added = updated = unchanged = 0
        now = utc_now()
        with writing(self._engine) as conn:
            for item in items:
                row = conn.execute(sa.select(c.c.id, c.c.covers, c.c.expires_on).where(
                    c.c.agent_id == item.agent_id, c.c.name == item.name, c.c.issued_on == item.issued_on)
                ).first()
                if row is None:
                    conn.execute(c.insert().values(
                        id=str(uuid.uuid4()), agent_id=item.agent_id, name=item.name,
                        covers=list(item.covers), issued_on=item.issued_on, expires_on=item.expires_on,
                        created_at=now, updated_at=now))
                    added += 1
                elif tuple(row[1]) == tuple(item.covers) and row[2] == item.expires_on:
                    unchanged += 1
                else:
                    conn.execute(c.update().where(c.c.id == row[0]).values(
                        covers=list(item.covers), expires_on=item.expires_on, updated_at=now))
                    updated += 1
        return ImportCounts(added=added, updated=updated, unchanged=unchanged)

    def certifications(self, agent_id: str | None = None, expires_from: date | None = None,
                       expires_to: date | None = None) -> list[Certification]:
        """Certifications (one agent's, expiring in a date range), by agent, name and issue date."""
        c = t.certifications
        conds: list[Any] = []
        if agent_id is not None:
            conds.append(c.c.agent_id == agent_id)
        if expires_from is not None:
            conds.append(c.c.expires_on >= expires_from)
        if expires_to is not None:
            conds.append(c.c.expires_on <= expires_to)
        query = sa.select(c).where(*conds).order_by(c.c.agent_id, c.c.name, c.c.issued_on)
        with self._engine.connect() as conn:
            return [_certification(r) for r in conn.execute(query).mappings()]

    def certification_page(self, agent_id: str | None = None, scope: Scope | None = None,
                           cursor: str | None = None,
                           page_size: int = paging.DEFAULT_PAGE_SIZE) -> Paged[Certification]:
        """One page of certifications (one agent's; of the agents a scope reaches), by agent, name and
        issue date, after the one the cursor names."""
        c = t.certifications
        query = sa.select(c).where(*_agent_conditions(c, agent_id, scope))
        return self._page(query, (c.c.agent_id, c.c.name, c.c.issued_on), CERTIFICATIONS, cursor, page_size,
                          _certification)

    def unrenewed_page(self, expires_from: date | None = None, expires_to: date | None = None,
                       scope: Scope | None = None, cursor: str | None = None,
                       page_size: int = paging.DEFAULT_PAGE_SIZE, *,
                       latest_first: bool = False) -> Paged[Certification]:
        """One page of the certifications expiring in a date range that were not renewed (the agent holds
        none of the same name expiring later), soonest expiry first, or most recent first with
        latest_first."""
        c, later = t.certifications, t.certifications.alias("later")
        renewed = sa.exists(sa.select(sa.literal(1)).select_from(later).where(
            later.c.agent_id == c.c.agent_id, later.c.name == c.c.name, later.c.expires_on > c.c.expires_on))
        query = sa.select(c).where(~renewed, *_agent_conditions(c, None, scope))
        if expires_from is not None:
            query = query.where(c.c.expires_on >= expires_from)
        if expires_to is not None:
            query = query.where(c.c.expires_on <= expires_to)
        return self._page(query, (c.c.expires_on, c.c.agent_id, c.c.name, c.c.issued_on),
                          LAPSED if latest_first else EXPIRING, cursor, page_size, _certification,
                          descending=latest_first)

    def _page(self, query: sa.Select, order: Sequence[Any], listing: paging.Listing[T], cursor: str | None,
              page_size: int, record: Callable[[Any], T], *, descending: bool = False) -> Paged[T]:
        with self._engine.connect() as conn:
            return listing.read(conn, query, order, cursor, page_size, record, descending=descending)

    def claim_expiry_notice(self, certification_id: str, expires_on: date) -> bool:
        """Mark the notice for this expiry date sent; False when it already was."""
        c = t.certifications
        # One conditional statement: of two workers checking at once, one claims the notice.
        with writing(self._engine) as conn:
            result = conn.execute(c.update().where(
                c.c.id == (canonical_uuid(certification_id) or certification_id),
                c.c.expires_on == expires_on,
                sa.or_(c.c.notified_expiry.is_(None), c.c.notified_expiry != expires_on),
            ).values(notified_expiry=expires_on))
            return bool(result.rowcount)

    def release_expiry_notice(self, certification_id: str) -> None:
        """Forget a claimed notice that could not be queued."""
        c = t.certifications
        with writing(self._engine) as conn:
            conn.execute(c.update().where(c.c.id == (canonical_uuid(certification_id) or certification_id))
                         .values(notified_expiry=None))

    def import_training(self, items: Sequence[TrainingRecord]) -> ImportCounts:
        """Store training records in one transaction (the first completion date of a version stays)."""
        tr = t.training_records
        added = unchanged = 0
        now = utc_now()
        with writing(self._engine) as conn:
            for item in items:
                found = conn.execute(sa.select(tr.c.id).where(
                    tr.c.agent_id == item.agent_id, tr.c.pack_id == item.pack_id,
                    tr.c.pack_version == item.pack_version)).first()
                if found is not None:
                    unchanged += 1
                    continue
                conn.execute(tr.insert().values(
                    agent_id=item.agent_id, pack_id=item.pack_id, pack_version=item.pack_version,
                    completed_on=item.completed_on, created_at=now))
                added += 1
        return ImportCounts(added=added, unchanged=unchanged)

    def training(self, agent_id: str | None = None, pack_id: str | None = None,
                 pack_version: str | None = None) -> list[TrainingRecord]:
        """Training records, by agent, pack, version."""
        tr = t.training_records
        query = _training(agent_id, pack_id, pack_version, None).order_by(
            tr.c.agent_id, tr.c.pack_id, tr.c.pack_version)
        with self._engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def training_page(self, agent_id: str | None = None, pack_id: str | None = None,
                      pack_version: str | None = None, scope: Scope | None = None, cursor: str | None = None,
                      page_size: int = paging.DEFAULT_PAGE_SIZE) -> Paged[TrainingRecord]:
        """One page of training records (filtered; of the agents a scope reaches), by agent, pack and
        version, after the one the cursor names."""
        tr = t.training_records
        order = (tr.c.agent_id, tr.c.pack_id, tr.c.pack_version)
        query = _training(agent_id, pack_id, pack_version, scope)
        return self._page(query, order, TRAINING, cursor, page_size, _record)

    def pack_agents(self, pack_id: str) -> set[str]:
        """The agents of every stored call scored under any version of this policy pack."""
        query = sa.select(t.calls.c.agent_id).where(t.calls.c.policy_pack_id == pack_id).distinct()
        with self._engine.connect() as conn:
            return {str(a) for a in conn.execute(query).scalars()}


def _certification(row: Any) -> Certification:
    return Certification(id=str(row["id"]), agent_id=row["agent_id"], name=row["name"],
                         covers=tuple(row["covers"]), issued_on=row["issued_on"],
                         expires_on=row["expires_on"],
                         notified_expiry=row["notified_expiry"])


def _agent_conditions(table: Any, agent_id: str | None, scope: Scope | None) -> list[Any]:
    """SQL conditions: the rows of one agent (when named) among the agents the scope reaches."""
    conds: list[Any] = []
    if agent_id is not None:
        conds.append(table.c.agent_id == agent_id)
    if scope is not None:
        conds.append(reached(table.c.agent_id, scope))
    return conds


def _training(agent_id: str | None, pack_id: str | None, pack_version: str | None,
              scope: Scope | None) -> sa.Select:
    tr = t.training_records
    conds = _agent_conditions(tr, agent_id, scope)
    for column, value in ((tr.c.pack_id, pack_id), (tr.c.pack_version, pack_version)):
        if value is not None:
            conds.append(column == value)
    return sa.select(tr).where(*conds)


def _record(row: Any) -> TrainingRecord:
    return TrainingRecord(agent_id=row["agent_id"], pack_id=row["pack_id"], pack_version=row["pack_version"],
                          completed_on=row["completed_on"])
