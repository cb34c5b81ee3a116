"""A rescore run in the worker: the stored rules it names, rescored with the worker's spaCy pipeline."""

from __future__ import annotations

import logging

from qa_service import notify, rescore
from qa_service.errors import Conflict
from qa_service.rescan import published_pack, rescan_stored
from qa_service.rescore import ImpactReport
from qa_service.services.rescores import work_rescore
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
        return rescan_stored(
            repo, context.compiled_rules("policy_pack", pack_id, version), context.engines().nlp,
            pack_version=lambda v: context.compiled_rules("policy_pack", pack_id, v),
            rubric=lambda rid, v: context.compiled_rules("rubric", rid, v), store=not run.dry_run)

    report = work_rescore(store=repo, run=run, work=work, settings=context.settings,
                          details="the worker log has the details")
    notify.notify_policy_impact(context.settings, repo.get_rescore_run(run.id), report.summary())
    return run.id
