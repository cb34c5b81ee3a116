"""Calls: register a call and queue it, answer a repeated submission, queue a failed call again.

Every way a call enters (an upload, the telephony webhook, `qa-service process` and its manifest
batches through `store_scored_call`, the demo) goes through `submit_call`: the same checks of the
rules it names, the same handling of a call id sent again, the same input storage and queueing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, BinaryIO

from qa_service.errors import Conflict, NotFound, TranscriptError, TransientError
from qa_service.intake import parse_transcript, settle_channel
from qa_service.queueing import enqueue_call, is_queued
from qa_service.records import CallMeta
from qa_service.services.rules import keep_loaded_rules, stored_rules
from qa_service.services.teams import in_scope
from qa_service.settings import Settings
from qa_service.storage.inputs import InputTooLarge, input_suffix
from qa_service.storage.objects import InputStore, ObjectMissing
from qa_service.storage.repository import (
    CallSource,
    InputKind,
    NewCall,
    Repository,
    StoredCall,
    StoredKey,
    StoredScorecard,
)

log = logging.getLogger(__name__)

# Roles that read every call. A key of another role (telephony) reads the calls it uploaded, and a
# call_id it sends again that another client used first is answered without that call's id.
READS_EVERY_CALL = ("admin", "qa", "supervisor")


class CallIdTaken(Conflict):
    """A call_id another client used first (HTTP 409); the answer does not say which call has it."""


class QueueUnavailable(TransientError):
    """Redis refused the job; the call is stored and will be enqueued again later."""


def may_read(key: StoredKey, call: StoredCall, *, store: Repository) -> bool:
    """Whether a key may read a call: its role reads every call (inside the key's teams and vendors, when
    it is scoped), it is the key of the call's agent, or the key uploaded the call."""
    if key.role in READS_EVERY_CALL:
        return in_scope(store, key, call)
    if key.scope is not None and key.scope.agent is not None:
        return in_scope(store, key, call)  # an agent's key: the agent's own calls
    return call.submitted_by_key_id is not None and call.submitted_by_key_id == key.id


def call_by_id(store: Repository, call_id: str) -> StoredCall:
    """The call with this service id, else the call its sender knows by this id, else NotFound naming the
    id asked for.

    No id names two calls: external ids are unique (a database constraint), and the service's own ids
    are UUIDs, which an upload or webhook may not use as external ids. Where an older call's external
    id is another call's service id, the service id wins.
    """
    try:
        return store.get_call(call_id)
    except NotFound:
        found = store.find_call(call_id)
        if found is None:
            raise NotFound(f"no call with id {call_id!r}") from None
        return found


def readable_call(store: Repository, key: StoredKey, call_id: str) -> StoredCall:
    """The call (by service or external id, `call_by_id`), when the key may read it; NotFound otherwise,
    as for a call that does not exist (a scoped key learns nothing of other teams' calls, not even that
    they exist or what the service calls them)."""
    call = call_by_id(store, call_id)
    if not may_read(key, call, store=store):
        raise NotFound(f"no call with id {call_id!r}")
    return call


def with_external_ids(store: Repository, data: Any) -> Any:
    """`data` (JSON-ready dicts and lists) with `external_id` beside every `call_id` that lacks one, read in
    one query: every answer that names a call names it by both ids (None: the call is gone or its sender
    gave no id)."""
    holders: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("call_id"), str) and "external_id" not in node:
                holders.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(data)
    if holders:
        found = store.external_ids({h["call_id"] for h in holders})
        for h in holders:
            named = dict(h)
            h.clear()
            for k, v in named.items():  # external_id right after call_id, as in every listing
                h[k] = v
                if k == "call_id":
                    h["external_id"] = found.get(v)
    return data


@dataclass(frozen=True)
class CallInput:
    """The recording or transcript sent with a call, as a stream (an upload's spooled file)."""

    kind: InputKind
    source: BinaryIO
    filename: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class CallRequest:
    """What the sender says about a call: who, when, which rules (None: the newest stored version)."""

    agent_id: str
    call_date: date
    rubric_id: str
    policy_pack_id: str
    rubric_version: str | None = None
    policy_pack_version: str | None = None
    channels: str = "auto"
    external_id: str | None = None
    source: CallSource = "upload"
    input_url: str | None = None  # a recording the worker downloads (webhook)
    input_kind: InputKind = "audio"  # when no input is sent along (a recording URL, a call scored inline)
    submitted_by_key_id: str | None = None
    channel: str | None = None  # call, chat, email, im; None: as the input says (intake.settle_channel)


@dataclass(frozen=True)
class Submitted:
    """The call stored for a submission, and whether this submission created it."""

    call: StoredCall
    created: bool


def _anyone(call: StoredCall) -> bool:
    return True


def transcript_too_large(settings: Settings) -> str:
    """Why a transcript was refused for its size, naming the setting."""
    return (f"the transcript is larger than the limit of {settings.max_transcript_bytes} bytes "
            "(QA_MAX_TRANSCRIPT_BYTES); split the conversation, or send the recording")


def submit_call(*, store: Repository, settings: Settings, queue: Any | None, request: CallRequest,
                upload: CallInput | None = None, inputs: InputStore | None = None,
                visible: Callable[[StoredCall], bool] = _anyone) -> Submitted:
    """Store a call (and its input, streamed into `inputs`) and queue it; a call id sent before gets the
    stored call back.

    `inputs` is where an upload goes (the process's input store; needed only with an upload). `queue`
    None registers the call without queueing it (the command line scores it inline).
    `visible` says whether the sender may see a call stored under its external id: when not,
    CallIdTaken (409) without that call's id. UnknownRules (422) for rules that are not stored,
    QueueUnavailable (503) when the call is stored but Redis refused the job.
    """
    limit = settings.max_upload_bytes
    if upload is not None and upload.kind == "transcript":
        limit = settings.max_transcript_bytes
        if upload.size is not None and upload.size > limit:
            raise InputTooLarge(transcript_too_large(settings))
    if request.external_id is not None:
        existing = store.find_call(request.external_id)
        if existing is not None:
            return _existing(existing, queue, settings, visible)
    kind = upload.kind if upload is not None else request.input_kind
    if kind == "audio" and request.channel not in (None, "call"):
        raise TranscriptError(f"a recording is a call, not {request.channel}: send written conversations "
                              "as a transcript")
    rubric = stored_rules(store, "rubric", request.rubric_id, request.rubric_version)
    policies = stored_rules(store, "policy_pack", request.policy_pack_id, request.policy_pack_version)

    new_id = str(uuid.uuid4())
    ref: str | None = None
    if upload is not None:
        if inputs is None:
            raise ValueError("an upload needs the input store to go to")
        suffix = input_suffix(upload.filename, upload.kind)
        ref = inputs.put_input(new_id, upload.source, suffix, limit)
    try:
        if inputs is not None and ref is not None and upload is not None and upload.kind == "transcript":
            # Junk text is refused now, while the caller is still listening, not later by the worker
            # (read back from the store: put_input refused anything over the limit).
            with inputs.open(ref) as stored:
                transcript = parse_transcript(stored.read(limit + 1), filename=ref.rsplit("/", 1)[-1])
            settle_channel(transcript, request.channel)  # a channel field that contradicts the input
        call, created = store.add_call(NewCall(
            id=new_id, external_id=request.external_id, agent_id=request.agent_id,
            call_date=request.call_date, rubric_id=rubric.id, rubric_version=rubric.version,
            policy_pack_id=policies.id, policy_pack_version=policies.version, channels=request.channels,
            source=request.source, input_kind=upload.kind if upload is not None else request.input_kind,
            input_path=ref, input_url=request.input_url,
            submitted_by_key_id=request.submitted_by_key_id, channel=request.channel,
        ))
    except BaseException:
        if inputs is not None and ref is not None:
            inputs.delete_input(new_id)
        raise
    if not created:  # the same external id raced in from another request
        if inputs is not None and ref is not None:
            inputs.delete_input(new_id)
        return _existing(call, queue, settings, visible)
    if queue is not None:
        queue_call(queue, call.id, settings)
    return Submitted(call, created=True)


def _existing(call: StoredCall, queue: Any | None, settings: Settings,
              visible: Callable[[StoredCall], bool]) -> Submitted:
    """A repeated submission: the call already stored, made sure not to be stranded off the queue."""
    if not visible(call):
        raise CallIdTaken("this call id was used by another client first; send the call with an id of yours")
    if call.status == "queued" and queue is not None:
        try:
            if not is_queued(queue, call.id):
                queue_call(queue, call.id, settings)
        except QueueUnavailable:
            raise
        except Exception:  # a Redis hiccup here must not hide the stored call from the caller
            log.warning("could not check the queue for call %s", call.id)
    return Submitted(call, created=False)


def queue_call(queue: Any, call_id: str, settings: Settings) -> None:
    """Enqueue a stored call; QueueUnavailable when Redis refuses it (the call stays stored)."""
    try:
        enqueue_call(queue, call_id, timeout=settings.job_timeout_s)
    except Exception as exc:  # redis-py raises several types; all mean "not queued"
        log.error("could not enqueue call %s: %s", call_id, type(exc).__name__)
        raise QueueUnavailable(
            f"the call is stored as {call_id} but the queue is unavailable; resend the request with the "
            "same call_id, or it will be queued when a worker starts") from None


def retry_call(*, store: Repository, inputs: InputStore, settings: Settings, queue: Any,
               call_id: str) -> StoredCall:
    """Put a failed call back to queued and enqueue it; Conflict when it cannot be retried."""
    call = store.get_call(call_id)
    if call.status != "failed":
        raise Conflict(f"only failed calls can be retried; this one is {call.status}")
    if not call.input_url and not (call.input_path and is_stored(inputs, call.id, call.input_path)):
        raise Conflict("the call's input is no longer stored: it is deleted when the input was unusable, "
                       "and otherwise QA_FAILED_INPUT_RETENTION_HOURS after the call failed; submit the "
                       "call again")
    call = store.requeue_call(call.id)
    queue_call(queue, call.id, settings)
    return call


def is_stored(inputs: InputStore, call_id: str, ref: str) -> bool:
    """Whether the input a reference names is still in the store."""
    try:
        return ref.rsplit("/", 1)[-1] in inputs.list_call(call_id)
    except (ValueError, ObjectMissing):  # not a call id of this store
        return False


def store_scored_call(*, store: Repository, settings: Settings, meta: CallMeta, card: dict[str, Any],
                      rubric: Any, policies: Any, input_kind: InputKind) -> StoredScorecard:
    """Register a call scored in this process (the command line) and store its scorecard as a worker
    would: the rules it was scored with are stored first; the same call id again adds a version."""
    keep_loaded_rules(store=store, kind="rubric", rules=rubric)
    keep_loaded_rules(store=store, kind="policy_pack", rules=policies)
    submitted = submit_call(store=store, settings=settings, queue=None, request=CallRequest(
        external_id=meta.call_id, agent_id=meta.agent_id, call_date=meta.call_date, rubric_id=rubric.id,
        rubric_version=rubric.version, policy_pack_id=policies.id, policy_pack_version=policies.version,
        channels=meta.channels, source="cli", input_kind=input_kind, channel=meta.channel))
    store.start_call(submitted.call.id)
    return store.finish_call(submitted.call.id, card)
