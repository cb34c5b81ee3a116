"""The transaction helper every SQL module shares (kept apart so migrations need not import `sql`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

# Execution option marking a transaction that will write (SQLite then takes the write lock up front).
WRITE_OPTION = "qa_write"


def writing(engine: Engine) -> Any:
    """A transaction that will write: `with writing(engine) as conn: ...`."""
    return engine.execution_options(**{WRITE_OPTION: True}).begin()
