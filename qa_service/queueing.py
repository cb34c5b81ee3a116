"""What the doors need of the queue: job paths, job ids and enqueueing (the worker runs the jobs).

Jobs are enqueued by dotted path, so importing this module stays cheap: nothing of the worker, the
pipeline or its models is imported here. The RQ job id of a call is the call id.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue
    from rq.job import Job

CALL_JOB = "qa_service.worker.jobs.process_call"
RESCORE_JOB = "qa_service.worker.jobs.rescore_run"
RESCAN_PART_JOB = "qa_service.worker.jobs.rescan_part"
DELIVER_JOB = "qa_service.worker.jobs.deliver_webhook"
RESULT_TTL_S = 24 * 3600
FAILURE_TTL_S = 7 * 24 * 3600


def call_lease_key(call_id: str) -> str:
    """Redis key held by the worker processing a call, for as long as it is alive (worker/lease.py)."""
    return f"qa:call-lease:{call_id}"


def enqueue_call(queue: Queue, call_id: str, *, timeout: int) -> Job:
    """Put a call on the queue by dotted path; the RQ job id is the call id.

    `timeout` is QA_JOB_TIMEOUT_S: RQ's own default (180 s) is too short for long calls.
    """
    return queue.enqueue(
        CALL_JOB, call_id, job_id=call_id, job_timeout=timeout, result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S, description=f"process call {call_id}",
    )


def rescore_job_id(run_id: str) -> str:
    """The RQ job id of a rescore run (kept apart from call ids, which are job ids too)."""
    return f"rescore-{run_id}"


def enqueue_rescore(queue: Queue, run_id: str, *, timeout: int) -> Job:
    """Put a rescore run on the queue by dotted path."""
    return queue.enqueue(
        RESCORE_JOB, run_id, job_id=rescore_job_id(run_id), job_timeout=timeout, result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S, description=f"rescore run {run_id}",
    )


def retry_job_id(call_id: str, attempt: int) -> str:
    """The RQ job id of the retry scheduled after a call's `attempt`-th run failed transiently."""
    return f"{call_id}-retry{attempt}"


def is_queued(queue: Queue, job_id: str) -> bool:
    """Whether RQ still holds a job of this id (waiting, running or finished recently)."""
    from rq.job import Job

    return bool(Job.exists(job_id, connection=queue.connection))


def forget_calls(connection: Redis, queue_names: Iterable[str],
                 call_ids: Collection[str]) -> dict[str, dict[str, int]]:
    """Delete every RQ job of these calls on these queues (waiting, scheduled, running, failed or
    finished: the call's own jobs and retries, and webhook deliveries whose body names it), then every
    Redis key whose name holds a call id (leases, results); returns per call id how many of each."""
    from rq import Queue
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    counts = {c: {"queue_jobs": 0, "redis_keys": 0} for c in call_ids}
    for name in queue_names:
        queue = Queue(name, connection=connection)
        registries = [queue.started_job_registry, queue.deferred_job_registry, queue.scheduled_job_registry,
                      queue.failed_job_registry, queue.finished_job_registry, queue.canceled_job_registry]
        job_ids = set(queue.get_job_ids())
        for registry in registries:
            job_ids.update(registry.get_job_ids())
        for job_id in sorted(job_ids):
            try:
                job: Job | None = Job.fetch(job_id, connection=connection)
            except NoSuchJobError:  # its hash expired: only the id is left in a list
                job = None
            owner = _owner(job_id, job, call_ids)
            if owner is None:
                continue
            counts[owner]["queue_jobs"] += 1
            if job is not None:
                job.delete(remove_from_queue=True)
            queue.remove(job_id)
            for registry in registries:
                connection.zrem(registry.key, job_id)
    for call_id in call_ids:
        for key in connection.scan_iter(match=f"*{call_id}*", count=1000):
            counts[call_id]["redis_keys"] += connection.delete(key)
    return counts


def _owner(job_id: str, job: Job | None, call_ids: Collection[str]) -> str | None:
    """The call a job belongs to: its id (`<call id>`, `<call id>-retry<n>`) or its arguments name it."""
    for call_id in call_ids:
        if job_id == call_id or job_id.startswith(f"{call_id}-"):
            return call_id
    if job is None:
        return None
    try:
        named = " ".join(str(a) for a in job.args)
    except Exception:  # arguments that cannot be read back name nothing we could find
        return None
    return next((c for c in call_ids if c in named), None)
