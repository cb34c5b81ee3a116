"""Rubrics and policy packs in the SQL database, by id and version, with their text and sha256."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from qa_service.errors import Conflict, NotFound
from qa_service.storage import tables as t
from qa_service.storage.db import SqlPart, utc, utc_now
from qa_service.storage.repository import (
    RulesKind,
    StoredRules,
)

log = logging.getLogger(__name__)

_RULES_TABLES = {"rubric": t.rubrics, "policy_pack": t.policy_packs}
_RULES_NAMES = {"rubric": "rubric", "policy_pack": "policy pack"}



class SqlRules(SqlPart):
    """`RulesStore` over SQL."""


    def put_rules(self, kind: RulesKind, rules_id: str, version: str, sha256: str, text: str) -> tuple[
            StoredRules, bool]:
        """Store a rubric or policy pack; the same content again is a no-op, other content is a Conflict."""
        table = _RULES_TABLES[kind]
        for _ in range(2):
            try:
                existing = self.get_rules(kind, rules_id, version)
            except NotFound:
                existing = None
            if existing is not None:
                if existing.sha256 != sha256:
                    raise Conflict(
                        f"{_RULES_NAMES[kind]} {rules_id!r} version {version!r} is already stored with "
                        f"different content; give the changed file a new version")
                return existing, False
            try:
                with self._write() as conn:
                    conn.execute(table.insert().values(
                        id=rules_id, version=version, sha256=sha256, yaml_text=text, created_at=utc_now()))
            except IntegrityError:
                continue  # stored by someone else meanwhile: compare with theirs
            return self.get_rules(kind, rules_id, version), True
        raise Conflict(f"{_RULES_NAMES[kind]} {rules_id!r} version {version!r} is being stored concurrently")

    def get_rules(self, kind: RulesKind, rules_id: str, version: str | None = None) -> StoredRules:
        """A stored rubric or policy pack (latest stored version unless one is named), or NotFound."""
        table = _RULES_TABLES[kind]
        query = sa.select(table).where(table.c.id == rules_id)
        if version is not None:
            query = query.where(table.c.version == version)
        query = query.order_by(table.c.seq.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            which = f" version {version!r}" if version is not None else ""
            raise NotFound(f"no {_RULES_NAMES[kind]} {rules_id!r}{which} is stored")
        return _rules(kind, row)

    def list_rules(self, kind: RulesKind) -> list[StoredRules]:
        """Every stored version of every rubric or policy pack."""
        table = _RULES_TABLES[kind]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.id, table.c.seq)).mappings()
            return [_rules(kind, r) for r in rows]


def _rules(kind: RulesKind, row: Any) -> StoredRules:
    return StoredRules(kind=kind, id=row["id"], version=row["version"], sha256=row["sha256"],
                       text=row["yaml_text"], created_at=utc(row["created_at"]))
