"""API keys in the SQL database, by their hash only, with a short memory of recent lookups."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import sqlalchemy as sa

from qa_service.errors import NotFound
from qa_service.storage import paging
from qa_service.storage import tables as t
from qa_service.storage.db import SqlPart, utc, utc_now, uuid_or_404
from qa_service.storage.listings import KEYS
from qa_service.storage.paging import Paged
from qa_service.storage.repository import (
    Scope,
    StoredKey,
)

log = logging.getLogger(__name__)

# Keys remembered by key_by_hash(max_age_s=...); past this many the memory starts over.
KEY_CACHE_SIZE = 10_000


class SqlKeys(SqlPart):
    """`KeyStore` over SQL."""

    # key hash -> (monotonic time read, key); only keys that exist, so a new key works at once.
    _keys: dict[str, tuple[float, StoredKey]]


    def add_key(self, name: str, role: str, key_hash: str, prefix: str | None = None,
                scope: Scope | None = None) -> StoredKey:
        """Store a new API key's hash (and its first characters, to recognise it by) with its scope."""
        key_id = str(uuid.uuid4())
        with self._write() as conn:
            conn.execute(t.api_keys.insert().values(
                id=key_id, name=name, role=role, key_hash=key_hash, prefix=prefix, created_at=utc_now(),
                revoked=False, scope_teams=list(scope.teams) if scope is not None and scope.teams else None,
                scope_vendors=list(scope.vendors) if scope is not None and scope.vendors else None,
                scope_agent=scope.agent if scope is not None else None))
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).mappings().one()
        return _key(row)

    def key_by_hash(self, key_hash: str, max_age_s: float = 0.0) -> StoredKey | None:
        """The key with this hash, revoked or not; with max_age_s, possibly as read up to that long ago
        (revoking through this same repository is seen at once)."""
        now = time.monotonic()
        if max_age_s > 0:
            cached = self._keys.get(key_hash)
            if cached is not None and now - cached[0] < max_age_s:
                return cached[1]
        with self.engine.connect() as conn:
            query = sa.select(t.api_keys).where(t.api_keys.c.key_hash == key_hash)
            row = conn.execute(query).mappings().first()
        if row is None:
            self._keys.pop(key_hash, None)
            return None
        key = _key(row)
        if len(self._keys) >= KEY_CACHE_SIZE:
            self._keys = {}
        self._keys[key_hash] = (now, key)
        return key

    def list_keys(self) -> list[StoredKey]:
        """Every key, oldest first."""
        with self.engine.connect() as conn:
            return [_key(r) for r in conn.execute(sa.select(t.api_keys).order_by(t.api_keys.c.created_at))
                    .mappings()]

    def key_page(self, cursor: str | None = None,
                 page_size: int = paging.DEFAULT_PAGE_SIZE) -> Paged[StoredKey]:
        """One page of keys, newest first (then by id), after the key the cursor names."""
        k = t.api_keys
        with self.engine.connect() as conn:
            return KEYS.read(conn, sa.select(k), (k.c.created_at, k.c.id), cursor, page_size, _key,
                             descending=True)

    def revoke_key(self, key_id: str) -> StoredKey:
        """Mark a key revoked, or NotFound."""
        key_id = uuid_or_404(key_id, "API key")
        with self._write() as conn:
            result = conn.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(revoked=True))
            if result.rowcount == 0:
                raise NotFound(f"no API key with id {key_id!r}")
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).mappings().one()
        self._keys.pop(row["key_hash"], None)
        return _key(row)


def _key(row: Any) -> StoredKey:
    teams, vendors = tuple(row["scope_teams"] or ()), tuple(row["scope_vendors"] or ())
    agent = row["scope_agent"]
    return StoredKey(id=str(row["id"]), name=row["name"], role=row["role"], key_hash=row["key_hash"],
                     created_at=utc(row["created_at"]), revoked=bool(row["revoked"]), prefix=row["prefix"],
                     scope=Scope(teams=teams, vendors=vendors, agent=agent) if teams or vendors or agent
                     else None)
