"""Routes: each one validates, stores, enqueues or reads, and returns. No scoring happens here."""

from __future__ import annotations

import io
import logging
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa_service import __version__
from qa_service.api.deps import (
    CallIdPath,
    InputsDep,
    ManageRulesKey,
    QueueDep,
    ReadCallKey,
    ReadOwnScoresKey,
    ReadRulesKey,
    RepoDep,
    RetryKey,
    SettingsDep,
    SubmitKey,
)
from qa_service.api.schemas import (
    AgentScorecards,
    Aggregate,
    CallAccepted,
    CallForm,
    CallOut,
    Error,
    Health,
    RescanStarted,
    ResponseTimeOut,
    RulesOut,
    ScorecardSummary,
    error_body,
)
from qa_service.errors import InputError, NotFound, QAServiceError
from qa_service.scorecard import ScorecardDoc
from qa_service.services import calls, teams
from qa_service.services.calls import (
    CallInput,
    CallRequest,
    QueueUnavailable,
    Submitted,
    call_by_id,
    may_read,
    readable_call,
    transcript_too_large,
)
from qa_service.services.rescores import start_publish_rescan
from qa_service.services.rules import add_rules, rules_path
from qa_service.settings import Settings
from qa_service.storage.inputs import InputTooLarge
from qa_service.storage.repository import AgentSummary, Repository, RescoreOverlap, RulesKind
from qa_service.storage.views import Filters

log = logging.getLogger(__name__)
router = APIRouter()

MAX_RULES_BYTES = 1024 * 1024  # a rubric or policy pack body; enforced as it streams in (app.BodyLimit)
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No or bad API key"},
    403: {"model": Error, "description": "The key's role may not do this"},
}


class BadRequest(InputError):
    """A request that is malformed in a way that is not a field validation error (HTTP 400)."""


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
                      inputs: InputsDep, response: Response, key: SubmitKey) -> CallAccepted:
    """Store a recorded call (or a transcript) and queue it for scoring."""
    # The body is read only now, once the key, its role and its rate limit have passed: declared as
    # form parameters, the fields would be parsed (and the upload spooled to disk) before any check.
    form = await _read_form(request, settings)
    try:
        fields = _call_fields(form)
        upload = _call_input(form)
        request_ = CallRequest(
            external_id=fields.call_id, agent_id=fields.agent_id, call_date=fields.call_date,
            rubric_id=fields.rubric_id, rubric_version=fields.rubric_version,
            policy_pack_id=fields.policy_pack_id, policy_pack_version=fields.policy_pack_version,
            channels=fields.channels, source="upload", submitted_by_key_id=key.id, channel=fields.channel)
        submitted = await run_in_threadpool(lambda: calls.submit_call(
            store=repo, settings=settings, queue=queue, request=request_, upload=upload, inputs=inputs,
            visible=lambda call: may_read(key, call, store=repo)))
        return accepted(submitted, response)
    finally:
        await form.close()


async def _read_form(request: Request, settings: Settings) -> FormData:
    try:
        # Text fields are held in memory while parsing: none may be longer than a transcript.
        return await request.form(max_part_size=settings.max_transcript_bytes)
    except StarletteHTTPException as exc:
        # Starlette answers a field over max_part_size with a 400 in these words: it is a size limit.
        if exc.status_code == 400 and "exceeded maximum size" in str(exc.detail):
            raise InputTooLarge(transcript_too_large(settings)) from None
        raise


def _call_fields(form: FormData) -> CallForm:
    """The form's text fields, validated; 422 naming each bad field like any other request."""
    # An empty field counts as not sent, as FastAPI's own form parameters treat it.
    sent = {name: value for name in CallForm.model_fields
            if (value := form.get(name)) is not None and value != ""}
    try:
        return CallForm.model_validate(sent)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _call_input(form: FormData) -> CallInput:
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
        return CallInput("transcript", io.BytesIO(text), None, len(text))
    part = audio if audio is not None else transcript
    assert isinstance(part, UploadFile)
    return CallInput("audio" if audio is not None else "transcript", part.file, part.filename, part.size)


def accepted(submitted: Submitted, response: Response) -> CallAccepted:
    """The answer to a submission: 202 for a new call, 200 for one submitted before; where to find it."""
    call = submitted.call
    if not submitted.created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/calls/{call.id}"
    return CallAccepted(id=call.id, status=call.status, external_id=call.external_id)


@router.get("/v1/calls/{call_id}", response_model=CallOut, tags=["calls"],
            responses={**_ERRORS, 404: {"model": Error}})
def get_call(call_id: CallIdPath, repo: RepoDep, key: ReadCallKey) -> CallOut:
    """A call's status (queued, processing, done, failed + reason), by the service's id or yours."""
    return CallOut.of(readable_call(repo, key, call_id))  # NotFound outside the key's reach


@router.get(
    "/v1/calls/{call_id}/scorecard", tags=["calls"],
    responses={**_ERRORS, 200: {"description": "Scorecard format v1", "model": ScorecardDoc},
               404: {"model": Error, "description": "No such call, or not scored yet"},
               409: {"model": Error, "description": "The call failed; see the reason"}},
)
def get_scorecard(call_id: CallIdPath, repo: RepoDep, key: ReadOwnScoresKey,
                  version: Annotated[int | None, Query(ge=1, description="Default: the latest")] = None,
                  ) -> Response:
    """The call's scorecard (format v1); rescored calls keep earlier versions."""
    if key.scope is not None:
        # NotFound outside the key's teams, as for no such call
        call_id = readable_call(repo, key, call_id).id
    # One database read for the call's status and the scorecard, sent as the JSON text stored; a second
    # only for an id that is not the service's own.
    try:
        found = repo.scorecard_text(call_id, version)
    except NotFound:
        found = repo.scorecard_text(call_by_id(repo, call_id).id, version)
    if found.status == "failed":
        return JSONResponse(status_code=409, content=error_body(
            f"the call failed: {found.failure_reason}", status=found.status))
    if found.status != "done" and version is None:
        return JSONResponse(status_code=404, content=error_body(
            f"the call is {found.status}; its scorecard is not ready yet", status=found.status))
    if found.json is None or found.version is None:
        which = f"version {version} of the scorecard" if version is not None else "a scorecard"
        raise NotFound(f"call {found.call_id} has no {which}")
    return Response(found.json, media_type="application/json",
                    headers={"X-Scorecard-Version": str(found.version), "X-Call-Id": found.call_id})


@router.post("/v1/calls/{call_id}/retry", status_code=202, response_model=CallAccepted, tags=["calls"],
             responses={**_ERRORS, 404: {"model": Error}, 409: {"model": Error}})
def retry_call(call_id: CallIdPath, repo: RepoDep, queue: QueueDep, settings: SettingsDep, inputs: InputsDep,
               key: RetryKey) -> CallAccepted:
    """Queue a failed call again (its input must still be stored)."""
    found = readable_call(repo, key, call_id)  # NotFound outside a scoped key's teams
    call = calls.retry_call(store=repo, inputs=inputs, settings=settings, queue=queue, call_id=found.id)
    return CallAccepted(id=call.id, status=call.status, external_id=call.external_id)


# -- agents ------------------------------------------------------------------------------------

@router.get("/v1/agents/{agent_id}/scorecards", response_model=AgentScorecards, tags=["agents"],
            responses={**_ERRORS, 422: {"model": Error}})
def agent_scorecards(
    agent_id: str, repo: RepoDep, key: ReadOwnScoresKey,
    date_from: Annotated[date | None, Query(alias="from", description="First call date, inclusive")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last call date, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AgentScorecards:
    """An agent's latest scorecard per call in a date range, newest first, with count, mean and pass rate."""
    if date_from and date_to and date_from > date_to:
        raise InputError("'from' is after 'to'")
    teams.readable_agent(repo, key, agent_id)
    rows, summary = repo.agent_scorecards(agent_id, date_from, date_to, limit=limit)
    if key.scope is not None:  # only the calls inside the key's teams, and their aggregate
        rows = teams.visible(repo, key, rows, lambda r: r.agent_id, lambda r: r.call_date)
        t = repo.views.totals(teams.scoped(key, Filters(agent_id=agent_id, date_from=date_from,
                                                        date_to=date_to)))
        summary = AgentSummary(count=t.count, mean_score=t.mean_score, pass_rate=t.pass_rate,
                               auto_fail_count=t.auto_fail_count)
    external = repo.external_ids(r.call_id for r in rows)
    return AgentScorecards(
        agent_id=agent_id, **{"from": date_from, "to": date_to},
        aggregate=Aggregate(count=summary.count, mean_score=summary.mean_score, pass_rate=summary.pass_rate,
                            auto_fail_count=summary.auto_fail_count,
                            response_times=[ResponseTimeOut.of(r) for r in summary.response_times]),
        scorecards=[ScorecardSummary.of(r, external.get(r.call_id)) for r in rows],
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
    stored, created = await run_in_threadpool(lambda: add_rules(store=repo, kind=kind, text=text))
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = f"/v1/{rules_path(kind)}/{stored.id}/{stored.version}"
    return RulesOut.of(stored, created)


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
async def post_policy_pack(request: Request, repo: RepoDep, response: Response, queue: QueueDep,
                           settings: SettingsDep, key: ManageRulesKey, rescan: bool = True) -> RulesOut:
    """Store a policy pack (YAML body, format v1), validated and kept with its sha256.

    A new version rescans, in a background rescore run, the stored calls of the pack it changes
    (dated from its effective date on, nothing transcribed again); `rescan.url` reports the impact.
    `?rescan=false` stores it without (a rescore run can name it later).
    """
    out = await _put_rules("policy_pack", request, repo, response)
    if out.created and rescan:
        out.rescan = await run_in_threadpool(
            lambda: _publish_rescan(repo=repo, settings=settings, queue=queue, key=key, out=out))
    return out


def _publish_rescan(*, repo: Repository, settings: Any, queue: Any, key: Any, out: RulesOut) -> RescanStarted:
    """Start the rescan of a published pack; the pack stays stored whatever happens to the run."""
    try:
        run = start_publish_rescan(store=repo, settings=settings, queue=queue, key=key, pack_id=out.id,
                                   pack_version=out.version)
    except RescoreOverlap as exc:
        return RescanStarted(id=None, status="not_started", url=None,
                             note=f"{exc}; start a rescore run of this version when it is done")
    except QueueUnavailable as exc:
        return RescanStarted(id=None, status="queued", url=None, note=str(exc))
    return RescanStarted(id=run.id, status=run.status, url=f"/v1/rescores/{run.id}")


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
