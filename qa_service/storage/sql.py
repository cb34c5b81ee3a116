"""The SQL repository: one SQLAlchemy implementation where the URL picks SQLite or PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on. Write transactions start with
BEGIN IMMEDIATE, so an API and a worker writing at once wait for each other (busy timeout)
instead of failing with "database is locked" when a reader tries to upgrade its lock; reads
start with a plain BEGIN and run beside the writer, as WAL allows. PostgreSQL goes through
psycopg 3.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from qa_service.errors import ConfigError, TransientError
from qa_service.storage.calibration import SqlCalibration
from qa_service.storage.certification import SqlCertification
from qa_service.storage.db import WRITE_OPTION
from qa_service.storage.disputes import SqlDisputes
from qa_service.storage.erasure import SqlErasure
from qa_service.storage.history import SqlHistory
from qa_service.storage.keys import SqlKeys
from qa_service.storage.migrate import upgrade
from qa_service.storage.rescore_runs import SqlRescoreRuns
from qa_service.storage.review import SqlAudit, SqlReviews
from qa_service.storage.rules import SqlRules
from qa_service.storage.scorecards import SqlScorecards
from qa_service.storage.search import SqlSearch
from qa_service.storage.sessions import SqlSessions
from qa_service.storage.teams import SqlTeams
from qa_service.storage.uploads import SqlUploads
from qa_service.storage.views import Views

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL with the settings this service relies on."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"QA_DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own BEGIN is deferred).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get(WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            # Plain postgresql:// would pick psycopg2, which is not installed; psycopg 3 is.
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    raise ConfigError(f"unsupported database {backend!r} in QA_DATABASE_URL: use sqlite:/// or postgresql://")


def open_repository(url: str | Any, *, migrate: bool = True) -> SqlRepository:
    """Connect to the database at `url` (or `settings.database_url`) and upgrade its schema to head."""
    engine = make_engine(url if isinstance(url, str) else str(url.database_url))
    if migrate:
        try:
            upgrade(engine)
        except OperationalError as exc:
            raise TransientError(f"cannot reach the database to migrate it: {exc.orig.__class__.__name__}") \
                from exc
    return SqlRepository(engine)


class SqlRepository(SqlScorecards, SqlRules, SqlRescoreRuns, SqlKeys, SqlErasure):
    """`Repository` over SQLAlchemy Core, one part per aggregate (calls and scorecards, rules, rescore
    runs, keys, erasure, and reviews, disputes, audit, sessions, certifications, teams, views, the
    search index, scorecard histories and uploads by key as attributes); safe to share between threads
    (one engine, short transactions)."""

    def __init__(self, engine: Engine):
        # Public for the storage contract tests only; nothing outside storage/ touches it.
        self.engine = engine
        self.reviews = SqlReviews(engine)
        self.disputes = SqlDisputes(engine)
        self.audit = SqlAudit(engine)
        self.sessions = SqlSessions(engine)
        self.certification = SqlCertification(engine)
        self.teams = SqlTeams(engine)
        self.calibration = SqlCalibration(engine)
        self.views = Views(engine)
        self.search = SqlSearch(engine)
        self.history = SqlHistory(engine)
        self.uploads = SqlUploads(engine)
        self._keys = {}

    def ping(self) -> None:
        """Raise TransientError when the database cannot be reached."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except OperationalError as exc:
            raise TransientError(f"database unreachable: {exc.orig.__class__.__name__}") from None

    def dispose(self) -> None:
        """Close pooled connections (before a process forks or exits)."""
        self.engine.dispose()
