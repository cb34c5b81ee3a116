"""Scoring one stored call: mark it processing, run the pipeline, store the scorecard, mark it done.

A failure is recorded on the call: unusable input fails it at once; a transient failure (download,
database, storage) is tried again after a pause that grows fourfold each time, up to MAX_ATTEMPTS
runs in all; anything else fails it with a safe reason while RQ keeps the traceback.
"""

from __future__ import annotations

import io
import logging
import time
from datetime import timedelta
from functools import partial
from typing import Any

from qa_service import notify
from qa_service.errors import InputError, TransientError
from qa_service.queueing import CALL_JOB, retry_job_id
from qa_service.records import Audio, CallMeta
from qa_service.services.certification import CertificationCheck
from qa_service.services.rescores import failure_reason
from qa_service.storage.objects import InputStore
from qa_service.storage.repository import StoredCall
from qa_service.worker.context import WorkerContext
from qa_service.worker.inputs import call_input, discard_input, keep_failed_input

log = logging.getLogger(__name__)

# A call that stopped mid-processing this many times (worker killed, machine lost) is failed
# instead of being handed to the next worker again.
MAX_ATTEMPTS = 3
# A transient failure is tried again after this pause, growing fourfold each time.
TRANSIENT_BACKOFF_S = 30.0


def score_stored_call(context: WorkerContext, call_id: str) -> str:
    """Score one stored call (the caller holds its lease); returns the call id."""
    repo, settings = context.store, context.settings
    call = repo.get_call(call_id)
    if call.status in ("done", "failed"):
        # A stale duplicate job: done calls are rescored on purpose, failed ones through retry
        # (which queues them again first), never by a leftover job.
        log.info("call %s is already %s; nothing to do", call_id, call.status)
        if call.status == "done":
            # In case the run that finished it stopped before this.
            discard_input(call, repo, settings, context.inputs)
        return call_id
    call = repo.start_call(call_id)
    started = time.monotonic()
    try:
        card = _score(context, call)
    except InputError as exc:
        failed = repo.fail_call(call_id, str(exc) or type(exc).__name__)
        discard_input(failed, repo, settings, context.inputs)  # nothing a retry could do with it
        log.warning("call %s failed: unusable input (%s)", call_id, type(exc).__name__)
        return call_id
    except TransientError as exc:
        if call.attempts < MAX_ATTEMPTS:
            delay = retry_later(context, call_id, call.attempts)
            log.warning("call %s: transient failure (%s); trying again in %.0f s", call_id,
                        type(exc).__name__, delay)
            return call_id
        failed = repo.fail_call(call_id, f"{exc}; gave up after {call.attempts} attempts, retry when fixed")
        keep_failed_input(failed, repo, settings, context.inputs)
        raise
    except Exception as exc:  # RQ's JobTimeoutException too
        failed = repo.fail_call(call_id, f"{failure_reason(exc, settings)}; the worker log has the details, "
                                         "retry when fixed")
        keep_failed_input(failed, repo, settings, context.inputs)
        raise
    if repo.get_call(call_id).status == "done":
        # Another run finished the call meanwhile: its lease was lost (Redis restarted while this
        # worker held it) and the call was queued again. Keep that scorecard, add no second version.
        log.warning("call %s was finished by another run meanwhile; discarding this result", call_id)
        discard_input(call, repo, settings, context.inputs)
        return call_id
    stored = repo.finish_call(call_id, card)
    notify.notify_scored(settings, call, stored, card)  # enqueues the outgoing webhooks, if set; never raises
    _record_stage_seconds(card)
    discard_input(call, repo, settings, context.inputs)
    log.info("call %s done in %.1f s", call_id, time.monotonic() - started)
    return call_id


def _score(context: WorkerContext, call: StoredCall) -> dict[str, Any]:
    from qa_service.pipeline import process_audio, process_transcript

    repo, settings = context.store, context.settings
    rubric = context.compiled_rules("rubric", call.rubric_id, call.rubric_version)
    policies = context.compiled_rules("policy_pack", call.policy_pack_id, call.policy_pack_version)
    meta = CallMeta(call_id=call.external_id or call.id, agent_id=call.agent_id, call_date=call.call_date,
                    channels=call.channels, channel=call.channel)  # type: ignore[arg-type]
    with call_input(call, repo, settings, context.inputs) as path:
        if call.input_kind == "transcript":
            from qa_service.intake import read_transcript

            transcript = read_transcript(path, max_bytes=settings.max_transcript_bytes)
            card = process_transcript(transcript, meta, rubric, policies, context.engines()).to_dict()
        else:
            keep = None
            if settings.keep_redacted_audio:
                keep = partial(keep_redacted_audio, context.inputs, call.id)
            card = process_audio(path, meta, rubric, policies, context.engines(),
                                 keep_redacted_audio=keep).to_dict()
    # The agent's certifications and refresher training, read from the database after the pure scoring.
    return CertificationCheck(repo).annotate(card, rubric, policies)


def keep_redacted_audio(inputs: InputStore, call_id: str, audio: Audio) -> str:
    """Store the call's redacted audio as `redacted.wav` in the input store; returns its reference."""
    from qa_service.stages.redact_audio import encode_wav

    return inputs.put_redacted_audio(call_id, io.BytesIO(encode_wav(audio)), ".wav")


def retry_later(context: WorkerContext, call_id: str, attempt: int) -> float:
    """Queue the call again after a backoff (RQ's scheduled registry); returns the delay in seconds."""
    from redis import Redis
    from rq import Queue, get_current_job

    settings = context.settings
    context.store.requeue_call(call_id)
    delay = TRANSIENT_BACKOFF_S * 4 ** (attempt - 1)
    job = get_current_job()
    connection = job.connection if job is not None else Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=connection)
    queue.enqueue_in(timedelta(seconds=delay), CALL_JOB, call_id, job_id=retry_job_id(call_id, attempt),
                     job_timeout=settings.job_timeout_s, description=f"process call {call_id} again")
    return delay


def _record_stage_seconds(card: dict[str, Any]) -> None:
    """Add the call's stage times to the totals /metrics reports (only when run by an RQ worker)."""
    from rq import get_current_job

    from qa_service.observe import record_stage_seconds

    job = get_current_job()
    if job is not None:
        record_stage_seconds(job.connection, card.get("models", {}).get("stage_seconds") or {})
