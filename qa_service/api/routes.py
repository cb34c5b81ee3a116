"""Routes: each one validates, stores, enqueues or reads, and returns. No scoring happens here."""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa_service import __version__
from qa_service.api.deps import (
    ManageRulesKey,
    QueueDep,
    ReadCallKey,
    ReadRulesKey,
    ReadScoresKey,
    RepoDep,
    RetryKey,
    SettingsDep,
    SubmitKey,
)
from qa_service.api.rulecheck import check_rules, upload_name
from qa_service.api.schemas import (
    AgentScorecards,
    Aggregate,
    CallAccepted,
    CallForm,
    CallOut,
    Error,
    Health,
    RulesOut,
    ScorecardSummary,
)
from qa_service.errors import Conflict, InputError, NotFound, QAServiceError, TransientError
from qa_service.intake import read_transcript
from qa_service.jobs import enqueue_call, retry_failed_call
from qa_service.rules.load import parse_yaml
from qa_service.settings import Settings
from qa_service.storage.inputs import InputTooLarge, input_suffix, remove_input, write_input
from qa_service.storage.repository import NewCall, Repository, RulesKind, StoredCall, StoredKey, StoredRules

log = logging.getLogger(__name__)
router = APIRouter()

MAX_RULES_BYTES = 1024 * 1024  # a rubric or policy pack body; enforced as it streams in (app.BodyLimit)
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No or bad API key"},
    403: {"model": Error, "description": "The key's role may not do this"},
}


class BadRequest(InputError):
    """A request that is malformed in a way that is not a field validation error (HTTP 400)."""


class UnknownRules(InputError):
    """The call names a rubric or policy pack that is not stored (HTTP 422)."""


class QueueUnavailable(TransientError):
    """Redis refused the job; the call is stored and will be enqueued again later."""


# -- health ------------------------------------------------------------------------------------

@router.get("/healthz", response_model=Health, tags=["service"])
def healthz(repo: RepoDep, queue: QueueDep, response: Response) -> Health:
    """Whether the database and the queue answer."""
    database = queue_state = "ok"
    try:
        repo.ping()
    except QAServiceError:
        database = "unreachable"
    try:
        queue.connection.ping()
    except Exception:  # any Redis failure means "not reachable" for a health check
        queue_state = "unreachable"
    status: Literal["ok", "degraded", "down"] = (
        "ok" if database == queue_state == "ok" else ("down" if database != "ok" else "degraded"))
    if status == "down":
        response.status_code = 503
    return Health(status=status, database=database, queue=queue_state, version=__version__)


# -- calls -------------------------------------------------------------------------------------

# Roles that read every call. A key of another role (telephony) reads the calls it uploaded, and a
# call_id it sends again that another client used first is answered without that call's id.
READS_EVERY_CALL = ("admin", "qa", "supervisor")


class CallIdTaken(Conflict):
    """A call_id another client used first (HTTP 409); the answer does not say which call has it."""


def may_read(key: StoredKey, call: StoredCall) -> bool:
    """Whether a key may read a call: its role reads every call, or the key uploaded the call."""
    return key.role in READS_EVERY_CALL or (call.submitted_by_key_id is not None
                                            and call.submitted_by_key_id == key.id)


@dataclass(frozen=True)
class _Input:
    """The audio or transcript part of an upload, still in the parser's spooled file."""

    kind: Literal["audio", "transcript"]
    source: BinaryIO
    filename: str | None
    size: int | None


@router.post(
    "/v1/calls", status_code=202, response_model=CallAccepted, tags=["calls"],
    openapi_extra=CallForm.openapi(),
    responses={**_ERRORS, 200: {"model": CallAccepted, "description": "This call_id was submitted before"},
               400: {"model": Error, "description": "Empty upload"},
               409: {"model": Error, "description": "Another client used this call_id first"},
               413: {"model": Error, "description": "Upload (or transcript) larger than the limit"},
               422: {"model": Error, "description": "Invalid fields, unknown rubric, unparseable transcript"},
               503: {"model": Error, "description": "Queue unavailable; resend with the same call_id"}},
)
async def submit_call(request: Request, settings: SettingsDep, repo: RepoDep, queue: QueueDep,
                      response: Response, key: SubmitKey) -> CallAccepted:
    """Store a recorded call (or a transcript) and queue it for scoring."""
    # The body is read only now, once the key, its role and its rate limit have passed: declared as
    # form parameters, the fields would be parsed (and the upload spooled to disk) before any check.
    form = await _read_form(request, settings)
    try:
        fields = _call_fields(form)
        upload = _call_input(form)
        accepted: CallAccepted = await run_in_threadpool(
            _store_call, fields, upload, key, settings, repo, queue, response)
        return accepted
    finally:
        await form.close()


async def _read_form(request: Request, settings: Settings) -> FormData:
    try:
        # Text fields are held in memory while parsing: none may be longer than a transcript.
        return await request.form(max_part_size=settings.max_transcript_bytes)
    except StarletteHTTPException as exc:
        # Starlette answers a field over max_part_size with a 400 in these words: it is a size limit.
        if exc.status_code == 400 and "exceeded maximum size" in str(exc.detail):
            raise InputTooLarge(_transcript_too_large(settings)) from None
        raise


def _transcript_too_large(settings: Settings) -> str:
    return (f"the transcript is larger than the limit of {settings.max_transcript_bytes} bytes "
            "(QA_MAX_TRANSCRIPT_BYTES); split the conversation, or send the recording")


def _call_fields(form: FormData) -> CallForm:
    """The form's text fields, validated; 422 naming each bad field like any other request."""
    # An empty field counts as not sent, as FastAPI's own form parameters treat it.
    sent = {name: value for name in CallForm.model_fields
            if (value := form.get(name)) is not None and value != ""}
    try:
        return CallForm.model_validate(sent)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _call_input(form: FormData) -> _Input:
    """The one audio or transcript part of an upload; 400 for none or both, 422 for audio sent as text."""
    audio, transcript = form.get("audio"), form.get("transcript")
    if isinstance(audio, str):
        if audio:
            raise RequestValidationError([{"loc": ("body", "audio"), "type": "value_error",
                                           "msg": "send the recording as a file (a part with a filename)"}])
        audio = None
    if isinstance(transcript, str) and not transcript.strip():
        transcript = None
    if audio is not None and transcript is not None:
        raise BadRequest("send either an audio file or a transcript, not both")
    if audio is None and transcript is None:
        raise BadRequest("send an audio file (field 'audio') or a transcript (field 'transcript')")
    if isinstance(transcript, str):
        text = transcript.encode("utf-8")
        return _Input("transcript", io.BytesIO(text), None, len(text))
    part = audio if audio is not None else transcript
    assert isinstance(part, UploadFile)
    return _Input("audio" if audio is not None else "transcript", part.file, part.filename, part.size)


def _store_call(fields: CallForm, upload: _Input, key: StoredKey, settings: Settings, repo: Repository,
                queue: Any, response: Response) -> CallAccepted:
    """Store the input and the call row, then queue it (runs in the thread pool: files and database)."""
    limit = settings.max_upload_bytes
    if upload.kind == "transcript":
        limit = settings.max_transcript_bytes
        if upload.size is not None and upload.size > limit:
            raise InputTooLarge(_transcript_too_large(settings))
    if fields.call_id is not None:
        existing = repo.find_call(fields.call_id)
        if existing is not None:
            return _existing(existing, queue, settings, response, visible=may_read(key, existing))
    rubric = stored_rules(repo, "rubric", fields.rubric_id, fields.rubric_version)
    policies = stored_rules(repo, "policy_pack", fields.policy_pack_id, fields.policy_pack_version)

    new_id = str(uuid.uuid4())
    suffix = input_suffix(upload.filename, upload.kind)
    path = write_input(settings.storage_dir, new_id, upload.source, suffix, limit)
    try:
        if upload.kind == "transcript":
            # Junk text is refused now, while the caller is still listening, not later by the worker.
            read_transcript(path, max_bytes=limit)
        call, created = repo.add_call(NewCall(
            id=new_id, external_id=fields.call_id, agent_id=fields.agent_id, call_date=fields.call_date,
            rubric_id=rubric.id, rubric_version=rubric.version, policy_pack_id=policies.id,
            policy_pack_version=policies.version, channels=fields.channels, source="upload",
            input_kind=upload.kind, input_path=str(path), submitted_by_key_id=key.id,
        ))
    except BaseException:
        remove_input(settings.storage_dir, new_id)
        raise
    if not created:  # the same call_id raced in from another request
        remove_input(settings.storage_dir, new_id)
        return _existing(call, queue, settings, response, visible=may_read(key, call))
    _enqueue(queue, call.id, settings)
    response.headers["Location"] = f"/v1/calls/{call.id}"
    return CallAccepted(id=call.id, status=call.status, external_id=call.external_id)


def stored_rules(repo: Repository, kind: RulesKind, rules_id: str, version: str | None) -> Any:
    """The stored rules of this id and version (None: newest), or UnknownRules (422) naming the upload."""
    try:
        return repo.get_rules(kind, rules_id, version)
    except NotFound as exc:
        raise UnknownRules(f"{exc}; upload it first (POST /v1/{_rules_path(kind)})") from None


def _rules_path(kind: RulesKind) -> str:
    return "rubrics" if kind == "rubric" else "policy-packs"


def _existing(call: StoredCall, queue: Any, settings: Settings, response: Response, *,
              visible: bool) -> CallAccepted:
    """Answer a repeated submission with the call already stored, making sure it is not stranded.

    A sender that may not see the stored call (`visible` false: another client used the id first)
    gets 409 without the call's id or status.
    """
    if not visible:
        raise CallIdTaken("this call id was used by another client first; send the call with an id of yours")
    if call.status == "queued":
        from rq.job import Job

        try:
            if not Job.exists(call.id, connection=queue.connection):
                _enqueue(queue, call.id, settings)
        except QueueUnavailable:
            raise
        except Exception:  # a Redis hiccup here must not hide the stored call from the caller
            log.warning("could not check the queue for call %s", call.id)
    response.status_code = 200
    response.headers["Location"] = f"/v1/calls/{call.id}"
    return CallAccepted(id=call.id, status=call.status, external_id=call.external_id)


def _enqueue(queue: Any, call_id: str, settings: Settings) -> None:
    try:
        enqueue_call(queue, call_id, timeout=settings.job_timeout_s)
    except Exception as exc:  # redis-py raises several types; all mean "not queued"
        log.error("could not enqueue call %s: %s", call_id, type(exc).__name__)
        raise QueueUnavailable(
            f"the call is stored as {call_id} but the queue is unavailable; resend the request with the "
            "same call_id, or it will be queued when a worker starts") from None


@router.get("/v1/calls/{call_id}", response_model=CallOut, tags=["calls"],
            responses={**_ERRORS, 404: {"model": Error}})
def get_call(call_id: str, repo: RepoDep, key: ReadCallKey) -> CallOut:
    """A call's status (queued, processing, done, failed + reason)."""
    call = repo.get_call(call_id)
    if not may_read(key, call):
        raise NotFound(f"no call with id {call_id!r}")  # as for a call that does not exist
    return CallOut.of(call)


@router.get(
    "/v1/calls/{call_id}/scorecard", tags=["calls"],
    responses={**_ERRORS, 200: {"description": "Scorecard format v1", "content": {"application/json": {}}},
               404: {"model": Error, "description": "No such call, or not scored yet"},
               409: {"model": Error, "description": "The call failed; see the reason"}},
)
def get_scorecard(call_id: str, repo: RepoDep, _key: ReadScoresKey,
                  version: Annotated[int | None, Query(ge=1, description="Default: the latest")] = None,
                  ) -> Response:
    """The call's scorecard (format v1); rescored calls keep earlier versions."""
    # One database read for the call's status and the scorecard, sent as the JSON text stored.
    found = repo.scorecard_text(call_id, version)
    if found.status == "failed":
        return JSONResponse(status_code=409, content={
            "detail": f"the call failed: {found.failure_reason}", "status": found.status})
    if found.status != "done" and version is None:
        return JSONResponse(status_code=404, content={
            "detail": f"the call is {found.status}; its scorecard is not ready yet", "status": found.status})
    if found.json is None or found.version is None:
        which = f"version {version} of the scorecard" if version is not None else "a scorecard"
        raise NotFound(f"call {found.call_id} has no {which}")
    return Response(found.json, media_type="application/json",
                    headers={"X-Scorecard-Version": str(found.version)})


@router.post("/v1/calls/{call_id}/retry", status_code=202, response_model=CallAccepted, tags=["calls"],
             responses={**_ERRORS, 404: {"model": Error}, 409: {"model": Error}})
def retry_call(call_id: str, repo: RepoDep, queue: QueueDep, settings: SettingsDep,
               _key: RetryKey) -> CallAccepted:
    """Queue a failed call again (its input must still be stored)."""
    call = retry_failed_call(repo, call_id)
    _enqueue(queue, call.id, settings)
    return CallAccepted(id=call.id, status=call.status, external_id=call.external_id)


# -- agents ------------------------------------------------------------------------------------

@router.get("/v1/agents/{agent_id}/scorecards", response_model=AgentScorecards, tags=["agents"],
            responses={**_ERRORS, 422: {"model": Error}})
def agent_scorecards(
    agent_id: str, repo: RepoDep, _key: ReadScoresKey,
    date_from: Annotated[date | None, Query(alias="from", description="First call date, inclusive")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last call date, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AgentScorecards:
    """An agent's latest scorecard per call in a date range, newest first, with count, mean and pass rate."""
    if date_from and date_to and date_from > date_to:
        raise InputError("'from' is after 'to'")
    rows, summary = repo.agent_scorecards(agent_id, date_from, date_to, limit=limit)
    return AgentScorecards(
        agent_id=agent_id, **{"from": date_from, "to": date_to},
        aggregate=Aggregate(count=summary.count, mean_score=summary.mean_score, pass_rate=summary.pass_rate,
                            auto_fail_count=summary.auto_fail_count),
        scorecards=[ScorecardSummary.of(r) for r in rows],
    )


# -- rubrics and policy packs ------------------------------------------------------------------

_YAML_BODY = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}}}}


async def _put_rules(kind: RulesKind, request: Request, repo: Repository, response: Response) -> RulesOut:
    body = await request.body()  # at most MAX_RULES_BYTES: the app's BodyLimit stops a longer one
    if not body.strip():
        raise BadRequest("the request body is empty: send the YAML file as the body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    known = await run_in_threadpool(_known_rules, repo, kind, text)
    if known is not None:
        response.status_code = 200
        return RulesOut.of(known, created=False)
    checked = await run_in_threadpool(check_rules, kind, text)
    stored, created = await run_in_threadpool(repo.put_rules, kind, checked.id, checked.version,
                                              checked.sha256, text)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/{_rules_path(kind)}/{stored.id}/{stored.version}"
    return RulesOut.of(stored, created)


def _known_rules(repo: Repository, kind: RulesKind, text: str) -> StoredRules | None:
    """Answer repeats and version clashes without starting the checker process."""
    import hashlib

    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for stored in repo.list_rules(kind):
        if stored.sha256 == digest:
            return stored
    # YAML that cannot be read (too deeply nested, an impossible date, ...) is refused here with its line.
    doc, _ = parse_yaml(text, upload_name(kind))
    if isinstance(doc, dict) and isinstance(doc.get("id"), str) and isinstance(doc.get("version"), str):
        try:
            repo.get_rules(kind, doc["id"], doc["version"])
        except NotFound:
            return None
        # Stored under this id and version with another sha256: put_rules says so with a 409.
        repo.put_rules(kind, doc["id"], doc["version"], digest, text)
    return None


_RULES_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERRORS, 200: {"model": RulesOut, "description": "Identical content was already stored"},
    409: {"model": Error, "description": "Same id and version, different content"},
    422: {"model": Error, "description": "The file does not validate (message names the line)"},
}


@router.post("/v1/rubrics", status_code=201, response_model=RulesOut, tags=["rules"],
             openapi_extra=_YAML_BODY, responses=_RULES_RESPONSES)
async def post_rubric(request: Request, repo: RepoDep, response: Response,
                      _key: ManageRulesKey) -> RulesOut:
    """Store a rubric (YAML body, format v1), validated and kept with its sha256."""
    return await _put_rules("rubric", request, repo, response)


@router.post("/v1/policy-packs", status_code=201, response_model=RulesOut, tags=["rules"],
             openapi_extra=_YAML_BODY, responses=_RULES_RESPONSES)
async def post_policy_pack(request: Request, repo: RepoDep, response: Response,
                           _key: ManageRulesKey) -> RulesOut:
    """Store a policy pack (YAML body, format v1), validated and kept with its sha256."""
    return await _put_rules("policy_pack", request, repo, response)


@router.get("/v1/rubrics", response_model=list[RulesOut], tags=["rules"], responses=_ERRORS)
def list_rubrics(repo: RepoDep, _key: ReadRulesKey) -> list[RulesOut]:
    """Every stored version of every rubric."""
    return [RulesOut.of(r) for r in repo.list_rules("rubric")]


@router.get("/v1/policy-packs", response_model=list[RulesOut], tags=["rules"], responses=_ERRORS)
def list_policy_packs(repo: RepoDep, _key: ReadRulesKey) -> list[RulesOut]:
    """Every stored version of every policy pack."""
    return [RulesOut.of(r) for r in repo.list_rules("policy_pack")]


@router.get("/v1/rubrics/{rubric_id}/{version}", tags=["rules"], response_class=Response,
            responses={**_ERRORS, 200: {"content": {"application/yaml": {}}}, 404: {"model": Error}})
def get_rubric(rubric_id: str, version: str, repo: RepoDep, _key: ReadRulesKey) -> Response:
    """The stored YAML of one rubric version."""
    stored = repo.get_rules("rubric", rubric_id, version)
    return Response(stored.text, media_type="application/yaml", headers={"X-Sha256": stored.sha256})


@router.get("/v1/policy-packs/{pack_id}/{version}", tags=["rules"], response_class=Response,
            responses={**_ERRORS, 200: {"content": {"application/yaml": {}}}, 404: {"model": Error}})
def get_policy_pack(pack_id: str, version: str, repo: RepoDep,
                    _key: ReadRulesKey) -> Response:
    """The stored YAML of one policy pack version."""
    stored = repo.get_rules("policy_pack", pack_id, version)
    return Response(stored.text, media_type="application/yaml", headers={"X-Sha256": stored.sha256})
