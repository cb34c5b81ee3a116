"""Bring a database to the newest schema with Alembic, programmatically (API and worker do it at start)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from qa_service.storage.db import writing

HERE = Path(__file__).resolve().parent
# Any fixed number works; it only has to be the same in every process that migrates this database.
_PG_LOCK_KEY = 0x51A5E1


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    return cfg


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _quiet_alembic() -> None:
    # Alembic logs each step at INFO; a service start-up only needs to hear about problems.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when it has never been migrated)."""
    _quiet_alembic()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Run `alembic upgrade head` on this engine; safe when several processes start at once."""
    if current_revision(engine) == head_revision():
        return
    cfg = alembic_config()
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            # The API and workers may start together: let one migrate while the others wait.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
