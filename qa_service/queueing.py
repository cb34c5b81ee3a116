"""What the doors need of the queue: job paths, job ids and enqueueing (the worker runs the jobs).

Jobs are enqueued by dotted path, so importing this module stays cheap: nothing of the worker, the
pipeline or its models is imported here. The RQ job id of a call is the call id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rq import Queue
    from rq.job import Job

CALL_JOB = "qa_service.worker.jobs.process_call"
RESCORE_JOB = "qa_service.worker.jobs.rescore_run"
DELIVER_JOB = "qa_service.worker.jobs.deliver_webhook"
RESULT_TTL_S = 24 * 3600
FAILURE_TTL_S = 7 * 24 * 3600


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
