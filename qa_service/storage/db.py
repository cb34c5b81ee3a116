"""What every SQL module of the repository shares: the write transaction, times, ids (kept apart from
`sql` so migrations need not import it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from qa_service.errors import NotFound
from qa_service.storage.repository import canonical_uuid

# Execution option marking a transaction that will write (SQLite then takes the write lock up front).
WRITE_OPTION = "qa_write"


def writing(engine: Engine) -> Any:
    """A transaction that will write: `with writing(engine) as conn: ...`."""
    return engine.execution_options(**{WRITE_OPTION: True}).begin()


def utc_now() -> datetime:
    """The time now, in UTC."""
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """A stored time as UTC (SQLite gives naive datetimes back; everything stored is UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def uuid_or_404(value: str, what: str) -> str:
    """The usual form of an id, or NotFound naming what was looked for."""
    # SQLite stores the hex digits and PostgreSQL its own uuid type; each reads a different set of the
    # ways an id can be written (PostgreSQL refuses urn:uuid:, SQLite capitals), so both get the usual form.
    found = canonical_uuid(value)
    if found is None:
        raise NotFound(f"no {what} with id {value!r}")
    return found


class SqlPart:
    """A part of `SqlRepository`: the engine it shares, and write transactions on it."""

    engine: Engine

    def _write(self) -> Any:
        return writing(self.engine)
