"""Recovery: calls and rescore runs whose worker or job was lost, and retries that are due.

Every worker runs these at start and at each RQ maintenance pass (about every MAINTENANCE_S).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from qa_service.queueing import enqueue_call, enqueue_rescore, rescore_job_id, retry_job_id
from qa_service.worker.calls import MAX_ATTEMPTS
from qa_service.worker.context import WorkerContext
from qa_service.worker.inputs import keep_failed_input
from qa_service.worker.lease import LEASE_TTL_S, age_s, holder_dead, lease_key, rescore_lease_key

if TYPE_CHECKING:
    from rq import Queue

log = logging.getLogger(__name__)


def reconcile(context: WorkerContext, queue: Queue) -> list[str]:
    """Re-enqueue calls left queued or processing whose RQ job is gone or dead; return their ids."""
    from rq.job import Job, JobStatus

    repo, settings = context.store, context.settings
    requeued = []
    connection = queue.connection
    for call in repo.calls_with_status(["queued", "processing"]):
        holder = connection.get(lease_key(call.id))
        holder_died = holder is not None and holder_dead(holder)
        if holder is not None and not holder_died:
            continue  # a live worker holds it (or one elsewhere whose lease has not lapsed yet)
        if holder_died:
            # The holder was a process on this machine that no longer exists: no need to wait
            # for its lease to lapse.
            connection.delete(lease_key(call.id))
        try:
            job = Job.fetch(call.id, connection=connection)
            status, started_at = job.get_status(), job.started_at
        except Exception:  # NoSuchJobError, or a job hash that expired or cannot be read
            status, started_at = None, None
        # Waiting in the queue, or started so recently that the worker may not hold the lease yet.
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            continue
        # Waiting out a backoff after a transient failure.
        retry = retry_job_id(call.id, call.attempts)
        if call.status == "queued" and Job.exists(retry, connection=connection):
            continue
        if (status == JobStatus.STARTED and not holder_died and started_at is not None
                and age_s(started_at) < LEASE_TTL_S):
            continue
        # Processing with a recent heartbeat in the database: the worker is alive even though Redis
        # has lost its lease and its job (a Redis restart); leave the call to it.
        if call.status == "processing" and not holder_died and age_s(call.updated_at) < LEASE_TTL_S:
            continue
        if call.attempts >= MAX_ATTEMPTS:
            failed = repo.fail_call(call.id, f"processing stopped {call.attempts} times without finishing "
                                             "(worker killed or timed out); retry when fixed")
            keep_failed_input(failed, repo, settings, context.inputs)
            continue
        repo.requeue_call(call.id)
        enqueue_call(queue, call.id, timeout=settings.job_timeout_s)
        requeued.append(call.id)
    if requeued:
        log.info("re-enqueued %d call(s) whose jobs were lost", len(requeued))
    return requeued


def reconcile_rescores(context: WorkerContext, queue: Queue) -> list[str]:
    """Queue again runs left queued without a job; fail running ones whose worker is gone.

    Returns the ids of the runs queued again.
    """
    from rq.job import Job, JobStatus

    repo = context.store
    requeued = []
    connection = queue.connection
    for run in repo.list_rescore_runs(statuses=["queued", "running"], limit=1000):
        if run.status == "queued":
            try:
                status = Job.fetch(rescore_job_id(run.id), connection=connection).get_status()
            except Exception:  # NoSuchJobError, or a job hash that expired or cannot be read
                status = None
            waiting = status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.STARTED)
            # Just stored by the API, which enqueues it a moment later.
            if waiting or age_s(run.created_at) < LEASE_TTL_S:
                continue
            enqueue_rescore(queue, run.id, timeout=context.settings.job_timeout_s)
            requeued.append(run.id)
            continue
        holder = connection.get(rescore_lease_key(run.id))
        if holder is not None and not holder_dead(holder):
            continue  # a live worker is on it (or one elsewhere whose lease has not lapsed yet)
        # Marked running a moment ago, while Redis restarted: the worker takes its lease again at
        # its next refresh.
        if holder is None and run.started_at is not None and age_s(run.started_at) < LEASE_TTL_S:
            continue
        # The worker was killed (its lease lapsed, or names a process here that has exited) or its
        # job went with a Redis restart: without this the run would wait out RQ's job timeout.
        # The job itself records ordinary failures and timeouts.
        connection.delete(rescore_lease_key(run.id))
        reason = "the worker running it stopped before it finished (killed or Redis restarted)"
        if not run.dry_run:
            reason += "; scorecards rescored before it stopped keep their new version"
        repo.fail_rescore_run(run.id, f"{reason}; start a new run")
    if requeued:
        log.info("re-enqueued %d rescore run(s) whose jobs were lost", len(requeued))
    return requeued


def enqueue_due_retries(queue: Queue) -> int:
    """Move jobs whose scheduled time has come (webhook retries, calls after a transient failure)
    back onto their queue; return how many were due.

    Workers run RQ's scheduler here, one pass at maintenance, instead of letting RQ fork a
    scheduler process (forking after the models are loaded hangs them, see the top of this
    module); RQ's scheduler lock keeps two workers from moving the same jobs.
    """
    from rq.scheduler import RQScheduler

    due = len(queue.scheduled_job_registry.get_jobs_to_schedule())
    if not due:
        return 0
    scheduler = RQScheduler([queue], connection=queue.connection)
    scheduler.acquire_locks()
    if not scheduler.acquired_locks:
        return 0  # another worker is moving them
    try:
        scheduler.enqueue_scheduled_jobs()
    finally:
        scheduler.release_locks()
    return due
