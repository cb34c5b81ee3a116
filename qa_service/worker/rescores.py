"""A rescore run in the worker: the stored rules it names, rescored with the worker's spaCy pipeline."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from qa_service import notify, rescore
from qa_service.errors import Conflict, QAServiceError
from qa_service.queueing import RESCAN_PART_JOB
from qa_service.rescan import date_spans, effective_dates, merge, partial, published_pack, rescan_stored
from qa_service.rescore import ImpactReport
from qa_service.services.rescores import failure_reason, work_rescore
from qa_service.storage.repository import StoredRescoreRun
from qa_service.worker.context import WorkerContext

log = logging.getLogger(__name__)


def rescore_started_run(context: WorkerContext, run_id: str) -> str:
    """Mark a queued run running and do it (the caller holds its lease); returns the run id."""
    repo = context.store
    run = repo.get_rescore_run(run_id)
    if run.status != "queued":
        log.info("rescore run %s is already %s; nothing to do", run_id, run.status)
        return run_id
    try:
        run = repo.start_rescore_run(run_id)
    except Conflict:  # a duplicate job started it first
        log.info("rescore run %s was started by another job; skipping", run_id)
        return run_id

    if published_pack(run.rubric_id) is not None:
        return _rescan_started_run(context, run)

    def work() -> ImpactReport:
        rubric = context.compiled_rules("rubric", run.rubric_id, run.rubric_version)
        policies = None
        if run.policy_pack_id is not None and run.policy_pack_version is not None:
            policies = context.compiled_rules("policy_pack", run.policy_pack_id, run.policy_pack_version)
        return rescore.rescore_stored(repo, rubric, policies, context.engines().nlp, since=run.since,
                                      until=run.until, store=not run.dry_run)

    work_rescore(store=repo, run=run, work=work, settings=context.settings,
                 details="the worker log has the details")
    return run_id


def _rescan_started_run(context: WorkerContext, run: StoredRescoreRun) -> str:
    """Rescan the calls of a policy pack just published; send `policy.impact` when it is done."""
    repo = context.store
    pack_id, version = run.policy_pack_id, run.policy_pack_version
    assert pack_id is not None and version is not None  # a publish run names its pack

    def work() -> ImpactReport:
        return _rescan_in_parts(context, run, pack_id, version)

    report = work_rescore(store=repo, run=run, work=work, settings=context.settings,
                          details="the worker log has the details")
    notify.notify_policy_impact(context.settings, repo.get_rescore_run(run.id), report.summary())
    return run.id


# -- a rescan split across workers ------------------------------------------------------------------
#
# The run's own job cuts the calls into spans of dates, one per worker listening on the queue (at most
# MAX_PARTS), and queues a job per span but the first. Each span is claimed in Redis before it is done,
# by whichever job gets to it first: the run's job does its own span, then every span no other worker
# has claimed yet, then waits for the others' results, merges them and finishes the run. So a run
# finishes with one worker as with several, and a span is never done twice.

MAX_PARTS = 8
PART_TTL_S = 24 * 3600


def _part_keys(run_id: str) -> tuple[str, str, str]:
    """Redis keys of a split run: span claims, partial results, failures (hashes keyed by span)."""
    return f"qa:rescan:{run_id}:claims", f"qa:rescan:{run_id}:results", f"qa:rescan:{run_id}:failures"


def _rescan_part(context: WorkerContext, run: StoredRescoreRun, pack_id: str, version: str,
                 span: tuple[dt.date, dt.date | None] | None) -> ImpactReport:
    return rescan_stored(
        context.store, context.compiled_rules("policy_pack", pack_id, version), context.engines().nlp,
        pack_version=lambda v: context.compiled_rules("policy_pack", pack_id, v),
        rubric=lambda rid, v: context.compiled_rules("rubric", rid, v), store=not run.dry_run, span=span)


def _rescan_in_parts(context: WorkerContext, run: StoredRescoreRun, pack_id: str,
                     version: str) -> ImpactReport:
    from rq import Queue, Worker, get_current_job

    job = get_current_job()
    policies = context.compiled_rules("policy_pack", pack_id, version)
    dates = [d for d in effective_dates(context.store, policies,
                                        lambda v: context.compiled_rules("policy_pack", pack_id, v)).values()
             if d is not None]
    workers = 1
    if job is not None and dates and min(dates) > dt.date.min:
        workers = Worker.count(queue=Queue(context.settings.queue_name, connection=job.connection))
    # Cut from the run's own date, as its parts' jobs cut them.
    spans = date_spans(min(dates), run.created_at.date(), min(workers, MAX_PARTS)) if dates else [None]
    if len(spans) == 1 or job is None:
        report = _rescan_part(context, run, pack_id, version, None)
        report.notes["parts"] = {"count": 1, "by_other_workers": 0}
        return report
    conn = job.connection
    claims, results, failures = _part_keys(run.id)
    queue = Queue(context.settings.queue_name, connection=conn)
    for i in range(1, len(spans)):
        queue.enqueue(RESCAN_PART_JOB, run.id, i, len(spans), job_id=f"rescore-{run.id}-part{i}",
                      job_timeout=context.settings.job_timeout_s, result_ttl=600,
                      description=f"rescan run {run.id}, part {i + 1} of {len(spans)}")
    mine: dict[int, dict[str, Any]] = {}
    try:
        for i in range(len(spans)):
            if conn.hsetnx(claims, str(i), job.id):
                conn.expire(claims, PART_TTL_S)
                mine[i] = partial(_rescan_part(context, run, pack_id, version, spans[i]))
        others: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + context.settings.job_timeout_s
        while len(mine) + len(others) < len(spans):
            failed = conn.hgetall(failures)
            if failed:
                raise RescanPartFailed("; ".join(sorted(v.decode() if isinstance(v, bytes) else str(v)
                                                        for v in failed.values())))
            others = {int(k): json.loads(v) for k, v in conn.hgetall(results).items()}
            if time.monotonic() > deadline:
                raise RescanPartFailed("a part of the run did not finish within the job timeout")
            time.sleep(0.2)
    finally:
        conn.delete(claims, results, failures)
    report = merge([*mine.values(), *others.values()])
    report.notes = {**_rescan_notes(context, pack_id, version),
                    "parts": {"count": len(spans), "by_other_workers": len(others)}}
    return report


def _rescan_notes(context: WorkerContext, pack_id: str, version: str) -> dict[str, Any]:
    policies = context.compiled_rules("policy_pack", pack_id, version)
    effective = effective_dates(context.store, policies,
                                lambda v: context.compiled_rules("policy_pack", pack_id, v))
    return {"effective_from": {v: None if d is None else d.isoformat() for v, d in effective.items()}}


class RescanPartFailed(QAServiceError):
    """A part of a rescan run failed on another worker (its reason) or never finished."""


def rescan_part(context: WorkerContext, run_id: str, part: int, parts: int) -> str:
    """Do one span of a split rescan run, unless the run's own job (or another) has claimed it."""
    from rq import get_current_job

    job = get_current_job()
    run = context.store.get_rescore_run(run_id)
    if job is None or run.status != "running":
        return run_id
    claims, results, failures = _part_keys(run_id)
    conn = job.connection
    if not conn.hsetnx(claims, str(part), job.id):
        return run_id  # done, or being done, by another job
    pack_id, version = run.policy_pack_id, run.policy_pack_version
    assert pack_id is not None and version is not None
    policies = context.compiled_rules("policy_pack", pack_id, version)
    dates = [d for d in effective_dates(context.store, policies,
                                        lambda v: context.compiled_rules("policy_pack", pack_id, v)).values()
             if d is not None]
    try:
        spans = date_spans(min(dates), run.created_at.date(), parts)
        report = _rescan_part(context, run, pack_id, version, spans[part])
    except Exception as exc:
        conn.hset(failures, str(part), f"part {part + 1} of {parts}: {failure_reason(exc, context.settings)}")
        conn.expire(failures, PART_TTL_S)
        raise
    conn.hset(results, str(part), json.dumps(partial(report)))
    conn.expire(results, PART_TTL_S)
    return run_id
