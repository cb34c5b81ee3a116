"""Certifications and training records of agents in the SQL database.

An import is one transaction: a file with one bad line was refused before it got here, and a file
that fails half-way (a lost connection) leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from qa_service.storage import tables as t
from qa_service.storage.db import utc_now, writing
from qa_service.storage.repository import Certification, ImportCounts, TrainingRecord, canonical_uuid


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
        conds: list[Any] = []
        for column, value in ((tr.c.agent_id, agent_id), (tr.c.pack_id, pack_id),
                              (tr.c.pack_version, pack_version)):
            if value is not None:
                conds.append(column == value)
        query = sa.select(tr).where(*conds).order_by(tr.c.agent_id, tr.c.pack_id, tr.c.pack_version)
        with self._engine.connect() as conn:
            return [TrainingRecord(agent_id=r["agent_id"], pack_id=r["pack_id"],
                                   pack_version=r["pack_version"], completed_on=r["completed_on"])
                    for r in conn.execute(query).mappings()]

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
