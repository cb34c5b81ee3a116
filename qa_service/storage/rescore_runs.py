"""Rescore runs in the SQL database: requested, running, done or failed, with the impact summary."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from qa_service.errors import Conflict, NotFound
from qa_service.storage import paging
from qa_service.storage import tables as t
from qa_service.storage.db import SqlPart, utc, utc_now, uuid_or_404
from qa_service.storage.repository import (
    NewRescoreRun,
    RescoreOverlap,
    StoredRescoreRun,
)

log = logging.getLogger(__name__)


class SqlRescoreRuns(SqlPart):
    """`RescoreRunStore` over SQL."""


    def add_rescore_run(self, run: NewRescoreRun) -> StoredRescoreRun:
        """Store a new rescore run, queued; RescoreOverlap when it would store beside another run."""
        values = {
            "id": run.id, "status": "queued", "rubric_id": run.rubric_id,
            "rubric_version": run.rubric_version,
            "policy_pack_id": run.policy_pack_id, "policy_pack_version": run.policy_pack_version,
            "since": run.since, "until": run.until, "dry_run": run.dry_run,
            "requested_by_key_id": run.requested_by_key_id, "requested_by_name": run.requested_by_name,
            "created_at": utc_now(),
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
        run_id = uuid_or_404(run_id, "rescore run")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.rescore_runs).where(t.rescore_runs.c.id == run_id)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no rescore run with id {run_id!r}")
        return _rescore_run(row)

    def list_rescore_runs(self, statuses: Iterable[str] | None = None,
                          after: tuple[datetime, str] | None = None,
                          limit: int = 50) -> list[StoredRescoreRun]:
        """Rescore runs, newest first by (requested time, id) (optionally only those with one of these
        statuses), from the one after the key `after` when given."""
        r = t.rescore_runs
        order = (r.c.created_at, r.c.id)
        query = sa.select(r)
        if statuses is not None:
            query = query.where(r.c.status.in_(list(statuses)))
        if after is not None:
            query = paging.after(query, order, after, descending=True)
        query = query.order_by(*(col.desc() for col in order)).limit(limit)
        with self.engine.connect() as conn:
            return [_rescore_run(row) for row in conn.execute(query).mappings()]

    def _update_rescore_run(self, run_id: str, *conditions: Any, **values: Any) -> int:
        run_id = uuid_or_404(run_id, "rescore run")
        r = t.rescore_runs
        with self._write() as conn:
            result = conn.execute(r.update().where(r.c.id == run_id, *conditions).values(**values))
            return int(result.rowcount)

    def start_rescore_run(self, run_id: str) -> StoredRescoreRun:
        """Mark a queued run running; Conflict when it is not queued (another job took it), NotFound."""
        # Conditional on `queued`, in one statement: of two jobs for the same run, one starts it.
        if not self._update_rescore_run(run_id, t.rescore_runs.c.status == "queued", status="running",
                                        started_at=utc_now()):
            run = self.get_rescore_run(run_id)
            raise Conflict(f"rescore run {run_id} is {run.status}, not queued")
        return self.get_rescore_run(run_id)

    def finish_rescore_run(self, run_id: str, summary: dict[str, Any]) -> StoredRescoreRun:
        """Mark a run done with its impact summary."""
        if not self._update_rescore_run(run_id, status="done", summary=summary, failure_reason=None,
                                        finished_at=utc_now()):
            raise NotFound(f"no rescore run with id {run_id!r}")
        return self.get_rescore_run(run_id)

    def fail_rescore_run(self, run_id: str, reason: str) -> StoredRescoreRun:
        """Mark a run failed with a reason that is safe to show (no personal data); a done run stays done."""
        # A reconciler that saw the run running may get here just after its job finished it.
        self._update_rescore_run(run_id, t.rescore_runs.c.status != "done", status="failed",
                                 failure_reason=reason[:2000], finished_at=utc_now())
        return self.get_rescore_run(run_id)


def _rescore_run(row: Any) -> StoredRescoreRun:
    started, finished = row["started_at"], row["finished_at"]
    return StoredRescoreRun(
        id=str(row["id"]), status=row["status"], rubric_id=row["rubric_id"],
        rubric_version=row["rubric_version"], policy_pack_id=row["policy_pack_id"],
        policy_pack_version=row["policy_pack_version"], since=row["since"], until=row["until"],
        dry_run=bool(row["dry_run"]), requested_by_key_id=row["requested_by_key_id"],
        requested_by_name=row["requested_by_name"], created_at=utc(row["created_at"]),
        started_at=utc(started) if started is not None else None,
        finished_at=utc(finished) if finished is not None else None,
        failure_reason=row["failure_reason"],
        summary=dict(row["summary"]) if row["summary"] is not None else None,
    )
