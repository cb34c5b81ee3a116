"""Storage of web sessions, as functions over the repository's engine.

A session is stored under the SHA-256 of its id, never the id itself, and deleted when its holder
signs out; expired rows are cleared whenever a session starts.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Engine

from qa_service.storage import tables as t
from qa_service.storage.db import writing


def _row_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(engine: Engine, session_id: str, key_id: str, max_age_s: int,
                  now: datetime | None = None) -> None:
    """Keep a new session of this key for `max_age_s` seconds, and forget the sessions that expired."""
    now = now or datetime.now(UTC)
    s = t.web_sessions
    with writing(engine) as conn:
        conn.execute(s.delete().where(s.c.expires_at <= now))
        conn.execute(s.insert().values(id=_row_id(session_id), key_id=key_id, created_at=now,
                                       expires_at=now + timedelta(seconds=max_age_s)))


def session_is_live(engine: Engine, session_id: str, key_id: str, now: datetime | None = None) -> bool:
    """Whether this session of this key was started, has not expired and was not ended."""
    s = t.web_sessions
    query = sa.select(s.c.id).where(s.c.id == _row_id(session_id), s.c.key_id == key_id,
                                    s.c.expires_at > (now or datetime.now(UTC)))
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def end_session(engine: Engine, session_id: str) -> None:
    """Forget a session (signing out); a session already gone is no error."""
    with writing(engine) as conn:
        conn.execute(t.web_sessions.delete().where(t.web_sessions.c.id == _row_id(session_id)))


class SqlSessions:
    """`SessionStore` over the SQL database."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def start(self, session_id: str, key_id: str, max_age_s: int, now: datetime | None = None) -> None:
        """Keep a new session of this key for `max_age_s` seconds."""
        start_session(self._engine, session_id, key_id, max_age_s, now)

    def is_live(self, session_id: str, key_id: str, now: datetime | None = None) -> bool:
        """Whether this session of this key was started, has not expired and was not ended."""
        return session_is_live(self._engine, session_id, key_id, now)

    def end(self, session_id: str) -> None:
        """Forget a session (signing out)."""
        end_session(self._engine, session_id)
