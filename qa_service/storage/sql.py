"""The SQL repository: one SQLAlchemy implementation where the URL picks SQLite or PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on. Write transactions start with
BEGIN IMMEDIATE, so an API and a worker writing at once wait for each other (busy timeout)
instead of failing with "database is locked" when a reader tries to upgrade its lock; reads
start with a plain BEGIN and run beside the writer, as WAL allows. PostgreSQL goes through
psycopg 3.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from qa_service.errors import ConfigError, Conflict, NotFound, TransientError
from qa_service.storage import tables as t
from qa_service.storage.db import WRITE_OPTION, writing
from qa_service.storage.migrate import upgrade
from qa_service.storage.repository import (
    AgentSummary,
    NewCall,
    NewRescoreRun,
    RescoreOverlap,
    RulesKind,
    ScorecardText,
    StoredCall,
    StoredKey,
    StoredRescoreRun,
    StoredRules,
    StoredScorecard,
    canonical_uuid,
)
from qa_service.storage.review import SqlAudit, SqlReviews
from qa_service.storage.sessions import SqlSessions
from qa_service.storage.views import Views

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Keys remembered by key_by_hash(max_age_s=...); past this many the memory starts over.
KEY_CACHE_SIZE = 10_000
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


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite gives naive datetimes back; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _uuid_or_404(value: str, what: str) -> str:
    # SQLite stores the hex digits and PostgreSQL its own uuid type; each reads a different set of the
    # ways an id can be written (PostgreSQL refuses urn:uuid:, SQLite capitals), so both get the usual form.
    found = canonical_uuid(value)
    if found is None:
        raise NotFound(f"no {what} with id {value!r}")
    return found


_RULES_TABLES = {"rubric": t.rubrics, "policy_pack": t.policy_packs}
_RULES_NAMES = {"rubric": "rubric", "policy_pack": "policy pack"}


class SqlRepository:
    """`Repository` over SQLAlchemy Core; safe to share between threads (one engine, short transactions)."""

    def __init__(self, engine: Engine):
        # Public for the storage contract tests only; nothing outside storage/ touches it.
        self.engine = engine
        self.reviews = SqlReviews(engine)
        self.audit = SqlAudit(engine)
        self.sessions = SqlSessions(engine)
        self.views = Views(engine)
        # key hash -> (monotonic time read, key); only keys that exist, so a new key works at once.
        self._keys: dict[str, tuple[float, StoredKey]] = {}

    def _write(self) -> Any:
        return writing(self.engine)

    # -- calls ---------------------------------------------------------------------------------

    def add_call(self, call: NewCall) -> tuple[StoredCall, bool]:
        """Store a new call; with a known external id return the existing call and False instead."""
        if call.external_id is not None:
            existing = self.find_call(call.external_id)
            if existing is not None:
                return existing, False
        now = _now()
        values = {
            "id": call.id, "external_id": call.external_id, "agent_id": call.agent_id,
            "call_date": call.call_date, "status": "queued", "failure_reason": None,
            "rubric_id": call.rubric_id, "rubric_version": call.rubric_version,
            "policy_pack_id": call.policy_pack_id, "policy_pack_version": call.policy_pack_version,
            "channels": call.channels, "source": call.source, "input_kind": call.input_kind,
            "input_path": call.input_path, "input_url": call.input_url, "attempts": 0,
            "created_at": now, "updated_at": now, "submitted_by_key_id": call.submitted_by_key_id,
        }
        try:
            with self._write() as conn:
                conn.execute(t.calls.insert().values(**values))
        except IntegrityError:
            # Two requests with the same external id raced; the other one won.
            if call.external_id is not None:
                existing = self.find_call(call.external_id)
                if existing is not None:
                    return existing, False
            raise Conflict(f"call {call.id} already exists") from None
        return self.get_call(call.id), True

    def get_call(self, call_id: str) -> StoredCall:
        """The call with this id, or NotFound."""
        call_id = _uuid_or_404(call_id, "call")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.calls).where(t.calls.c.id == call_id)).mappings().first()
        if row is None:
            raise NotFound(f"no call with id {call_id!r}")
        return _call(row)

    def find_call(self, external_id: str) -> StoredCall | None:
        """The call registered under this external id, if any."""
        with self.engine.connect() as conn:
            query = sa.select(t.calls).where(t.calls.c.external_id == external_id)
            row = conn.execute(query).mappings().first()
        return _call(row) if row is not None else None

    def calls_with_status(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Every call whose status is one of these, oldest first."""
        query = sa.select(t.calls).where(t.calls.c.status.in_(list(statuses))).order_by(t.calls.c.created_at)
        with self.engine.connect() as conn:
            return [_call(r) for r in conn.execute(query).mappings()]

    def calls_with_plain_input(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Calls with one of these statuses whose input is stored unsealed, oldest first."""
        from qa_service.storage.inputs import SEALED_SUFFIX

        c = t.calls.c
        query = sa.select(t.calls).where(c.status.in_(list(statuses)), c.input_path.is_not(None),
                                         sa.not_(c.input_path.endswith(SEALED_SUFFIX))).order_by(c.created_at)
        with self.engine.connect() as conn:
            return [_call(r) for r in conn.execute(query).mappings()]

    def failed_calls_with_input(self, failed_before: datetime) -> list[StoredCall]:
        """Failed calls that failed before this moment and still have an input stored, oldest first."""
        c = t.calls.c
        # A failed call's row changes only when it fails and when its input is sealed at that moment
        # (a retry makes it queued again), so updated_at is when it failed.
        query = sa.select(t.calls).where(c.status == "failed", c.input_path.is_not(None),
                                         c.updated_at < _utc(failed_before)).order_by(c.created_at)
        with self.engine.connect() as conn:
            return [_call(r) for r in conn.execute(query).mappings()]

    def _update_call(self, call_id: str, **values: Any) -> StoredCall:
        call_id = _uuid_or_404(call_id, "call")
        with self._write() as conn:
            result = conn.execute(
                t.calls.update().where(t.calls.c.id == call_id).values(updated_at=_now(), **values))
            if result.rowcount == 0:
                raise NotFound(f"no call with id {call_id!r}")
        return self.get_call(call_id)

    def start_call(self, call_id: str) -> StoredCall:
        """Mark a call processing and count the attempt."""
        return self._update_call(call_id, status="processing", failure_reason=None,
                                 attempts=t.calls.c.attempts + 1)

    def requeue_call(self, call_id: str) -> StoredCall:
        """Put a call back to queued, clearing any failure reason."""
        return self._update_call(call_id, status="queued", failure_reason=None)

    def fail_call(self, call_id: str, reason: str) -> StoredCall:
        """Mark a call failed with a reason that is safe to show (no personal data)."""
        return self._update_call(call_id, status="failed", failure_reason=reason[:2000])

    def set_input_path(self, call_id: str, path: str | None) -> None:
        """Record where the call's input is stored (None once it has been deleted)."""
        self._update_call(call_id, input_path=path)

    def touch_call(self, call_id: str) -> None:
        """Note that a worker is still processing the call (its heartbeat: updated_at moves on)."""
        self._update_call(call_id)

    # -- scorecards ----------------------------------------------------------------------------

    def finish_call(self, call_id: str, scorecard: dict[str, Any]) -> StoredScorecard:
        """Store a new scorecard version and mark the call done, in one transaction."""
        call = self.get_call(call_id)
        with self._write() as conn:
            last = conn.execute(
                sa.select(sa.func.max(t.scorecards.c.version)).where(t.scorecards.c.call_id == call.id)
            ).scalar()
            now = _now()
            values = _scorecard_row(call, (last or 0) + 1, scorecard, now)
            conn.execute(t.scorecards.insert().values(**values))
            _demote_earlier(conn, [call.id])
            conn.execute(t.calls.update().where(t.calls.c.id == call.id).values(
                status="done", failure_reason=None, updated_at=now))
        return self.get_scorecard(call.id, values["version"])

    def get_scorecard(self, call_id: str, version: int | None = None) -> StoredScorecard:
        """A call's scorecard (latest version unless one is named), or NotFound."""
        call_id = _uuid_or_404(call_id, "call")
        query = sa.select(t.scorecards).where(t.scorecards.c.call_id == call_id)
        if version is not None:
            query = query.where(t.scorecards.c.version == version)
        query = query.order_by(t.scorecards.c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            which = f"version {version} of the scorecard" if version is not None else "a scorecard"
            raise NotFound(f"call {call_id} has no {which}")
        return _scorecard(row, with_data=True)

    def scorecard_text(self, call_id: str, version: int | None = None) -> ScorecardText:
        """The call's status with its scorecard (latest unless a version is named) as JSON text, in one
        read; NotFound when there is no such call."""
        call_id = _uuid_or_404(call_id, "call")
        c, sc = t.calls, t.scorecards
        which = sc.c.latest if version is None else sc.c.version == version
        # The stored text goes out as it is: no decoding into Python and encoding again per request.
        query = (sa.select(c.c.id, c.c.status, c.c.failure_reason, sc.c.version, sa.cast(sc.c.data, sa.Text))
                 .select_from(c.outerjoin(sc, sa.and_(sc.c.call_id == c.c.id, which)))
                 .where(c.c.id == call_id))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no call with id {call_id!r}")
        return ScorecardText(call_id=str(row[0]), status=row[1], failure_reason=row[2],
                             version=int(row[3]) if row[3] is not None else None, json=row[4])

    def agent_scorecards(self, agent_id: str, date_from: date | None = None, date_to: date | None = None,
                         limit: int = 100) -> tuple[list[StoredScorecard], AgentSummary]:
        """An agent's latest scorecard per call in a date range (newest first) and their aggregate."""
        sc = t.scorecards
        conds = [sc.c.agent_id == agent_id, sc.c.latest, *_date_range(date_from, date_to)]
        columns = [c for c in sc.c if c.name != "data"]
        rows_q = (sa.select(*columns).where(*conds)
                  .order_by(sc.c.call_date.desc(), sc.c.created_at.desc()).limit(limit))
        agg_q = sa.select(
            sa.func.count(), sa.func.avg(sc.c.score),
            sa.func.sum(sa.case((sc.c.passed, 1), else_=0)),
            sa.func.sum(sa.case((sc.c.auto_fail, 1), else_=0)),
        ).where(*conds)
        with self.engine.connect() as conn:
            rows = [_scorecard(r, with_data=False) for r in conn.execute(rows_q).mappings()]
            count, mean, passed, auto_fail = conn.execute(agg_q).one()
        count = int(count or 0)
        summary = AgentSummary(
            count=count,
            mean_score=round(float(mean), 2) if count else None,
            pass_rate=round(int(passed or 0) / count, 4) if count else None,
            auto_fail_count=int(auto_fail or 0),
        )
        return rows, summary

    def latest_scorecards(self, date_from: date | None = None, date_to: date | None = None,
                          rubric_id: str | None = None, batch: int = 500) -> Iterator[StoredScorecard]:
        """Every call's latest scorecard in a date range (optionally for one rubric id), oldest first."""
        sc = t.scorecards
        query = (sa.select(sc).where(sc.c.latest, *_date_range(date_from, date_to))
                 .order_by(sc.c.call_date, sc.c.call_id))
        if rubric_id is not None:
            query = query.where(sc.c.rubric_id == rubric_id)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(query)
            for row in result.mappings():
                yield _scorecard(row, with_data=True)

    def add_scorecard_versions(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Store new scorecard versions for calls that are done (rescoring), in one transaction."""
        sc = t.scorecards
        if not items:
            return 0
        ids = [call_id for call_id, _ in items]
        now = _now()
        with self._write() as conn:
            last = dict(conn.execute(sa.select(sc.c.call_id, sa.func.max(sc.c.version))
                                     .where(sc.c.call_id.in_(ids)).group_by(sc.c.call_id)).all())
            calls = {r.id: r for r in conn.execute(sa.select(t.calls).where(t.calls.c.id.in_(ids)))}
            rows = []
            for call_id, card in items:
                if call_id not in calls:
                    raise NotFound(f"no call with id {call_id!r}")
                version = (last.get(call_id) or 0) + 1
                last[call_id] = version  # the same call twice in one batch gets two versions
                rows.append(_scorecard_row(calls[call_id], version, card, now))
            conn.execute(sc.insert(), rows)
            _demote_earlier(conn, list(dict.fromkeys(ids)))
        return len(rows)

    # -- rules ---------------------------------------------------------------------------------

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
                        id=rules_id, version=version, sha256=sha256, yaml_text=text, created_at=_now()))
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

    # -- rescore runs --------------------------------------------------------------------------

    def add_rescore_run(self, run: NewRescoreRun) -> StoredRescoreRun:
        """Store a new rescore run, queued; RescoreOverlap when it would store beside another run."""
        values = {
            "id": run.id, "status": "queued", "rubric_id": run.rubric_id,
            "rubric_version": run.rubric_version,
            "policy_pack_id": run.policy_pack_id, "policy_pack_version": run.policy_pack_version,
            "since": run.since, "until": run.until, "dry_run": run.dry_run,
            "requested_by_key_id": run.requested_by_key_id, "requested_by_name": run.requested_by_name,
            "created_at": _now(),
        }
        try:
            with self._write() as conn:
                conn.execute(t.rescore_runs.insert().values(**values))
        except IntegrityError:
            other = None if run.dry_run else self.storing_rescore_run(run.rubric_id)
            if other is None:
                raise
            raise RescoreOverlap(other) from None
        return self.get_rescore_run(run.id)

    def storing_rescore_run(self, rubric_id: str) -> StoredRescoreRun | None:
        """The queued or running rescore run that stores scorecards of this rubric, if there is one."""
        r = t.rescore_runs
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(r).where(r.c.rubric_id == rubric_id, sa.text(t.STORING_RUN))
                               ).mappings().first()
        return None if row is None else _rescore_run(row)

    def get_rescore_run(self, run_id: str) -> StoredRescoreRun:
        """The rescore run with this id, or NotFound."""
        run_id = _uuid_or_404(run_id, "rescore run")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.rescore_runs).where(t.rescore_runs.c.id == run_id)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no rescore run with id {run_id!r}")
        return _rescore_run(row)

    def list_rescore_runs(self, statuses: Iterable[str] | None = None,
                          limit: int = 50) -> list[StoredRescoreRun]:
        """Rescore runs, newest first (optionally only those with one of these statuses)."""
        r = t.rescore_runs
        query = sa.select(r).order_by(r.c.created_at.desc(), r.c.id).limit(limit)
        if statuses is not None:
            query = query.where(r.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [_rescore_run(row) for row in conn.execute(query).mappings()]

    def _update_rescore_run(self, run_id: str, *conditions: Any, **values: Any) -> int:
        run_id = _uuid_or_404(run_id, "rescore run")
        r = t.rescore_runs
        with self._write() as conn:
            result = conn.execute(r.update().where(r.c.id == run_id, *conditions).values(**values))
            return int(result.rowcount)

    def start_rescore_run(self, run_id: str) -> StoredRescoreRun:
        """Mark a queued run running; Conflict when it is not queued (another job took it), NotFound."""
        # Conditional on `queued`, in one statement: of two jobs for the same run, one starts it.
        if not self._update_rescore_run(run_id, t.rescore_runs.c.status == "queued", status="running",
                                        started_at=_now()):
            run = self.get_rescore_run(run_id)
            raise Conflict(f"rescore run {run_id} is {run.status}, not queued")
        return self.get_rescore_run(run_id)

    def finish_rescore_run(self, run_id: str, summary: dict[str, Any]) -> StoredRescoreRun:
        """Mark a run done with its impact summary."""
        if not self._update_rescore_run(run_id, status="done", summary=summary, failure_reason=None,
                                        finished_at=_now()):
            raise NotFound(f"no rescore run with id {run_id!r}")
        return self.get_rescore_run(run_id)

    def fail_rescore_run(self, run_id: str, reason: str) -> StoredRescoreRun:
        """Mark a run failed with a reason that is safe to show (no personal data); a done run stays done."""
        # A reconciler that saw the run running may get here just after its job finished it.
        self._update_rescore_run(run_id, t.rescore_runs.c.status != "done", status="failed",
                                 failure_reason=reason[:2000], finished_at=_now())
        return self.get_rescore_run(run_id)

    # -- API keys ------------------------------------------------------------------------------

    def add_key(self, name: str, role: str, key_hash: str, prefix: str | None = None) -> StoredKey:
        """Store a new API key's hash (and its first characters, to recognise it by)."""
        key_id = str(uuid.uuid4())
        with self._write() as conn:
            conn.execute(t.api_keys.insert().values(
                id=key_id, name=name, role=role, key_hash=key_hash, prefix=prefix, created_at=_now(),
                revoked=False))
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

    def revoke_key(self, key_id: str) -> StoredKey:
        """Mark a key revoked, or NotFound."""
        key_id = _uuid_or_404(key_id, "API key")
        with self._write() as conn:
            result = conn.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(revoked=True))
            if result.rowcount == 0:
                raise NotFound(f"no API key with id {key_id!r}")
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).mappings().one()
        self._keys.pop(row["key_hash"], None)
        return _key(row)

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


def _call(row: Any) -> StoredCall:
    return StoredCall(
        id=str(row["id"]), external_id=row["external_id"], agent_id=row["agent_id"],
        call_date=row["call_date"],
        status=row["status"], failure_reason=row["failure_reason"], rubric_id=row["rubric_id"],
        rubric_version=row["rubric_version"], policy_pack_id=row["policy_pack_id"],
        policy_pack_version=row["policy_pack_version"], channels=row["channels"], source=row["source"],
        input_kind=row["input_kind"], input_path=row["input_path"], input_url=row["input_url"],
        attempts=int(row["attempts"]), created_at=_utc(row["created_at"]), updated_at=_utc(row["updated_at"]),
        submitted_by_key_id=row["submitted_by_key_id"],
    )


def _scorecard_row(call: Any, version: int, card: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The scorecards-table row for one version of a call's scorecard."""
    rubric = card.get("rubric") or {}
    return {
        "call_id": call.id, "version": version, "agent_id": call.agent_id, "call_date": call.call_date,
        "score": float(card["score"]), "passed": bool(card["passed"]),
        "auto_fail": bool(card.get("auto_fail", False)), "rubric_id": str(rubric.get("id", call.rubric_id)),
        "rubric_version": str(rubric.get("version", call.rubric_version)),
        "rubric_sha256": str(rubric.get("sha256", "")), "data": card, "created_at": now, "latest": True,
        "to_check": len(card.get("to_check") or []),
        "provisional": bool(card.get("provisional", False)),
    }


def _demote_earlier(conn: Any, call_ids: list[str]) -> None:
    """Leave `latest` set only on the newest version of each of these calls (same transaction)."""
    sc = t.scorecards
    s2 = sc.alias("s2")
    newest = sa.select(sa.func.max(s2.c.version)).where(s2.c.call_id == sc.c.call_id).scalar_subquery()
    for k in range(0, len(call_ids), 500):
        conn.execute(sc.update().where(sc.c.call_id.in_(call_ids[k:k + 500]), sc.c.latest,
                                       sc.c.version < newest).values(latest=False))


def _date_range(date_from: date | None, date_to: date | None) -> list[Any]:
    sc = t.scorecards
    conds: list[Any] = []
    if date_from is not None:
        conds.append(sc.c.call_date >= date_from)
    if date_to is not None:
        conds.append(sc.c.call_date <= date_to)
    return conds


def _scorecard(row: Any, *, with_data: bool) -> StoredScorecard:
    return StoredScorecard(
        call_id=str(row["call_id"]), version=int(row["version"]), agent_id=row["agent_id"],
        call_date=row["call_date"], score=float(row["score"]), passed=bool(row["passed"]),
        auto_fail=bool(row["auto_fail"]), rubric_id=row["rubric_id"], rubric_version=row["rubric_version"],
        rubric_sha256=row["rubric_sha256"], created_at=_utc(row["created_at"]),
        data=dict(row["data"]) if with_data else {},
    )


def _rules(kind: RulesKind, row: Any) -> StoredRules:
    return StoredRules(kind=kind, id=row["id"], version=row["version"], sha256=row["sha256"],
                       text=row["yaml_text"], created_at=_utc(row["created_at"]))


def _rescore_run(row: Any) -> StoredRescoreRun:
    started, finished = row["started_at"], row["finished_at"]
    return StoredRescoreRun(
        id=str(row["id"]), status=row["status"], rubric_id=row["rubric_id"],
        rubric_version=row["rubric_version"], policy_pack_id=row["policy_pack_id"],
        policy_pack_version=row["policy_pack_version"], since=row["since"], until=row["until"],
        dry_run=bool(row["dry_run"]), requested_by_key_id=row["requested_by_key_id"],
        requested_by_name=row["requested_by_name"], created_at=_utc(row["created_at"]),
        started_at=_utc(started) if started is not None else None,
        finished_at=_utc(finished) if finished is not None else None,
        failure_reason=row["failure_reason"],
        summary=dict(row["summary"]) if row["summary"] is not None else None,
    )


def _key(row: Any) -> StoredKey:
    return StoredKey(id=str(row["id"]), name=row["name"], role=row["role"], key_hash=row["key_hash"],
                     created_at=_utc(row["created_at"]), revoked=bool(row["revoked"]), prefix=row["prefix"])
