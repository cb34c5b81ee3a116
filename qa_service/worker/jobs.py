"""The job functions RQ calls by dotted path (`qa_service.queueing`): ids in, ids out, a few lines
each, over the worker context of this process."""

from __future__ import annotations

import logging

from qa_service import notify
from qa_service.worker import rescores
from qa_service.worker.calls import score_stored_call
from qa_service.worker.context import current
from qa_service.worker.lease import lease_key, leased, rescore_lease_key
from qa_service.worker.rescores import rescore_started_run

log = logging.getLogger(__name__)


def process_call(call_id: str) -> str:
    """Score one stored call: mark processing, run the pipeline, store the scorecard, mark done."""
    context = current()
    with leased(lease_key(call_id), touch=lambda: context.store.touch_call(call_id)) as held:
        if not held:
            # A duplicate job (resend, recovery) while a live worker holds this call: let that one finish.
            log.info("call %s is being processed by another worker; skipping", call_id)
            return call_id
        return score_stored_call(context, call_id)


def rescore_run(run_id: str) -> str:
    """Rescore the stored calls a run names with its stored rules; store the impact summary, mark it done.

    A failure marks the run failed with a readable reason and is raised again, so RQ keeps the
    traceback. New scorecard versions are stored in batches as the run goes: a run that fails midway
    keeps those already stored, and running it again rescores every call once more.
    """
    context = current()
    # Taken before the run is marked running, so a running run without a live lease is one whose
    # worker died (see recovery.reconcile_rescores).
    with leased(rescore_lease_key(run_id)) as held:
        if not held:
            log.info("rescore run %s is being worked by another job; skipping", run_id)
            return run_id
        return rescore_started_run(context, run_id)


def rescan_part(run_id: str, part: int, parts: int) -> str:
    """One span of the calls of a rescan run split across workers (worker/rescores.py)."""
    return rescores.rescan_part(current(), run_id, part, parts)


def deliver_webhook(event: str, body: str, delivery: str) -> int:
    """POST one signed outgoing webhook; return the HTTP status. Raises DeliveryFailed to be retried."""
    return notify.deliver(current().settings, event, body, delivery)
