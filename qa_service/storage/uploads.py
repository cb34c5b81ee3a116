"""The calls one API key uploaded, newest first: the upload page lists them with their status, so a
reloaded page still shows how each upload is getting on."""

from __future__ import annotations

import sqlalchemy as sa

from qa_service.storage import tables as t
from qa_service.storage.calls import _call
from qa_service.storage.db import SqlPart
from qa_service.storage.repository import StoredCall


class SqlUploads(SqlPart):
    """Uploads by key over SQL."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def recent(self, key_id: str, limit: int = 50) -> list[StoredCall]:
        """The last `limit` calls this key submitted, newest first."""
        c = t.calls
        query = (sa.select(c).where(c.c.submitted_by_key_id == key_id)
                 .order_by(c.c.created_at.desc(), c.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [_call(row) for row in conn.execute(query).mappings()]
