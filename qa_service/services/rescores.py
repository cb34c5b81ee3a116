"""Rescore runs: start one for a worker, do a started run's work, and record what it changed.

A run is stored and its id enqueued; a worker rescores the stored (redacted) transcripts with the
spaCy pipeline it already holds (`worker.jobs.rescore_run`); `qa-service rescore` does the same work
in its own process as a recorded run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from qa_service.errors import Conflict, QAServiceError
from qa_service.queueing import enqueue_rescore
from qa_service.services.calls import QueueUnavailable
from qa_service.services.rules import stored_rules
from qa_service.settings import Settings
from qa_service.storage import listings, paging
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, Paged
from qa_service.storage.repository import (
    NewRescoreRun,
    Repository,
    RescoreOverlap,
    StoredKey,
    StoredRescoreRun,
)

if TYPE_CHECKING:
    from qa_service.rescore import ImpactReport

log = logging.getLogger(__name__)


def start_rescore(*, store: Repository, settings: Settings, queue: Any, key: StoredKey, rubric_id: str,
                  rubric_version: str, policy_pack_id: str | None, policy_pack_version: str | None,
                  since: date | None, until: date | None, dry_run: bool) -> StoredRescoreRun:
    """Store a rescore run of stored rules and queue it; Conflict while a storing run of the rubric
    is under way, QueueUnavailable when Redis refuses the job (a worker queues the run later)."""
    stored_rules(store, "rubric", rubric_id, rubric_version)
    if policy_pack_id is not None and policy_pack_version is not None:
        stored_rules(store, "policy_pack", policy_pack_id, policy_pack_version)
    try:
        run = store.add_rescore_run(NewRescoreRun(
            id=str(uuid.uuid4()), rubric_id=rubric_id, rubric_version=rubric_version,
            policy_pack_id=policy_pack_id, policy_pack_version=policy_pack_version,
            since=since, until=until, dry_run=dry_run,
            requested_by_key_id=key.id, requested_by_name=key.name,
        ))
    except RescoreOverlap as exc:
        raise Conflict(f"{exc}; start this run when it is done (GET /v1/rescores/{exc.other.id}); "
                       "dry runs may run beside it") from None
    try:
        enqueue_rescore(queue, run.id, timeout=settings.job_timeout_s)
    except Exception as exc:  # redis-py raises several types; all mean "not queued"
        log.error("could not enqueue rescore run %s: %s", run.id, type(exc).__name__)
        raise QueueUnavailable(
            f"the rescore run is stored as {run.id} but the queue is unavailable; a worker queues it "
            f"when it starts (GET /v1/rescores/{run.id})") from None
    return run


def list_runs(*, store: Repository, status: str | None = None, cursor: str | None = None,
              page_size: int = DEFAULT_PAGE_SIZE) -> Paged[StoredRescoreRun]:
    """One page of rescore runs (in a status), newest first, after the run the cursor names; InputError
    for a cursor this listing did not give."""
    page_size = paging.page_size_within(page_size)
    after = listings.RESCORES.after(cursor)
    runs = store.list_rescore_runs(statuses=[status] if status else None, after=after, limit=page_size + 1)
    return listings.RESCORES.page(runs, page_size)


def start_publish_rescan(*, store: Repository, settings: Settings, queue: Any, key: StoredKey | None,
                         pack_id: str, pack_version: str) -> StoredRescoreRun:
    """Store and queue the rescan of the calls of a policy pack just published (`qa_service.rescan`):
    RescoreOverlap while the rescan of an earlier version is under way, QueueUnavailable when
    Redis refuses the job (a worker queues the run later)."""
    from qa_service.rescan import publish_rubric_id

    run = store.add_rescore_run(NewRescoreRun(
        id=str(uuid.uuid4()), rubric_id=publish_rubric_id(pack_id), rubric_version=pack_version,
        policy_pack_id=pack_id, policy_pack_version=pack_version,
        requested_by_key_id=key.id if key else None, requested_by_name=key.name if key else "cli"))
    try:
        enqueue_rescore(queue, run.id, timeout=settings.job_timeout_s)
    except Exception as exc:  # redis-py raises several types; all mean "not queued"
        log.error("could not enqueue rescan run %s: %s", run.id, type(exc).__name__)
        raise QueueUnavailable(
            f"the rescan is stored as run {run.id} but the queue is unavailable; a worker queues it "
            f"when it starts (GET /v1/rescores/{run.id})") from None
    return run


def add_cli_run(*, store: Repository, rubric: Any, policies: Any | None, since: date | None,
                until: date | None) -> StoredRescoreRun:
    """Record a rescore run the command line does itself (requested by "cli"); RescoreOverlap while
    a storing run of the same rubric is under way."""
    return store.add_rescore_run(NewRescoreRun(
        id=str(uuid.uuid4()), rubric_id=rubric.id, rubric_version=rubric.version, requested_by_name="cli",
        policy_pack_id=policies and policies.id, policy_pack_version=policies and policies.version,
        since=since, until=until,
    ))


def failure_reason(exc: BaseException, settings: Settings) -> str:
    """A failure reason safe to show: our own errors carry safe messages, others only their type."""
    from rq.timeouts import JobTimeoutException

    if isinstance(exc, JobTimeoutException):
        return f"processing took longer than the job timeout of {settings.job_timeout_s} s (QA_JOB_TIMEOUT_S)"
    if isinstance(exc, QAServiceError):
        return str(exc)
    if not isinstance(exc, Exception):
        return "stopped before it finished"
    return f"internal error ({type(exc).__name__})"


def work_rescore(*, store: Repository, run: StoredRescoreRun, work: Callable[[], ImpactReport],
                 settings: Settings, details: str) -> ImpactReport:
    """Do a started run's work; mark it done with its summary, or failed with a reason, and audit it."""
    started = time.monotonic()
    try:
        report = work()
    except BaseException as exc:
        reason = failure_reason(exc, settings)
        if not run.dry_run:
            reason += "; scorecards rescored before the failure keep their new version"
        store.fail_rescore_run(run.id, f"{reason}; {details}, start a new run when fixed")
        _audit_rescore(store, run, "failed")
        raise
    summary = report.summary()
    store.finish_rescore_run(run.id, summary)
    _audit_rescore(store, run, f"calls={summary['calls']}")
    log.info("rescore run %s done in %.1f s: %d calls", run.id, time.monotonic() - started, summary["calls"])
    return report


def _audit_rescore(store: Repository, run: StoredRescoreRun, outcome: str) -> None:
    """Record in the audit log that a run changed scorecards (as `qa-service rescore` does); never raises."""
    if run.dry_run:
        return  # nothing was stored
    try:
        role = next((k.role for k in store.list_keys() if k.id == run.requested_by_key_id), None)
        store.audit.record("rescore", key_id=run.requested_by_key_id, key_name=run.requested_by_name,
                           role=role, target_kind="rubric", target_id=run.rubric_id,
                           details=f"version={run.rubric_version} {outcome} run={run.id}")
    except Exception:  # the run's own row holds the outcome; a lost audit row is logged
        log.exception("could not write the audit row of rescore run %s", run.id)


def rescore_now(*, store: Repository, settings: Settings, rubric: Any, policies: Any | None, nlp: Any,
                since: date | None, until: date | None,
                progress: Callable[[int], Any] | None = None) -> ImpactReport:
    """Rescore and store in this process as a recorded run, like one a worker does for the API.

    The run is listed with the API's (requested by "cli") and keeps its impact summary; a storing
    run of the same rubric already under way refuses it (RescoreOverlap), and one started from the
    API while this runs is refused in turn. Its lease is held on the queue's Redis, so a worker's
    reconciler leaves it alone while this process lives and fails it if the process is killed.
    """
    from qa_service.rescore import rescore_stored
    from qa_service.worker.lease import leased, redis_if_answering, rescore_lease_key

    run = add_cli_run(store=store, rubric=rubric, policies=policies, since=since, until=until)
    with leased(rescore_lease_key(run.id), connection=redis_if_answering(settings.redis_url)):
        run = store.start_rescore_run(run.id)
        return work_rescore(store=store, run=run, settings=settings,
                            details="the command's output has the details",
                            work=lambda: rescore_stored(store, rubric, policies, nlp, since=since,
                                                        until=until, progress=progress))
