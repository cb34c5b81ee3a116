"""Alembic environment: use the connection the service hands over, or QA_DATABASE_URL when run by hand."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from qa_service.storage.tables import metadata

config = context.config


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables in later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """Run migrations online on the given connection (offline SQL generation is not supported)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("QA_DATABASE_URL")
    if not url:
        raise SystemExit("set QA_DATABASE_URL (or sqlalchemy.url) to run migrations")
    engine = create_engine(url)
    with engine.connect() as conn:
        _configure(conn)
    engine.dispose()


run()
