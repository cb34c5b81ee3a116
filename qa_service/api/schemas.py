"""Request and response bodies of the API (what /openapi.json shows)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qa_service.errors import InputError
from qa_service.intake import call_date_from, check_call_date
from qa_service.storage.repository import StoredCall, StoredRules, StoredScorecard
from qa_service.storage.views import ResponseRate

# Ids appear in URLs and logs: printable, no spaces or slashes.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$"
Channels = Literal["auto", "stereo", "stereo-agent-right", "mono"]
_ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")


def message_of(error: Mapping[str, Any]) -> str:
    """What a pydantic error says is wrong, without pydantic's "Value error, " in front of our own words."""
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def not_a_uuid(value: str | None) -> str | None:
    """An external call id, refused when it reads as a UUID: it would be taken for the service's own id."""
    if value is None:
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    raise ValueError("must not be a UUID: the service's own call ids are UUIDs and yours would be taken "
                     "for one; add a prefix, e.g. 'pbx-<id>'")


def _call_day(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError("write the day of the call as YYYY-MM-DD")  # not a number of seconds since 1970
    try:
        return call_date_from(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None


class ErrorItem(BaseModel):
    """One thing wrong with a request: a field (its dotted name), or a line or item of an import."""

    model_config = ConfigDict(extra="forbid")

    message: str
    field: str | None = None
    type: str | None = None
    line: int | None = None
    item: int | None = None


class Error(BaseModel):
    """The one error format of every route: `detail` says what is wrong; `errors` names each part."""

    model_config = ConfigDict(extra="forbid")

    detail: str
    errors: list[ErrorItem] | None = Field(None, description="Each invalid field, line or item")
    status: str | None = Field(None, description="The call's status, where the answer is about a call")


def one_error_format(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI description with `Error` as the 422 answer of every API operation (an unknown query
    parameter is refused on each), in place of FastAPI's own validation error shape, which the app's
    handler never sends."""
    error = {"description": "Invalid or unknown parameters, or an invalid body",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, operations in spec.get("paths", {}).items():
        if not (path.startswith("/v1/") or path in ("/healthz", "/metrics")):
            continue
        for operation in operations.values():
            answer = operation.setdefault("responses", {}).get("422") or {}
            if "content" not in answer or "HTTPValidationError" in str(answer):
                operation["responses"]["422"] = {**error, "description": answer.get("description")
                                                 or error["description"]}
    schemas = spec.get("components", {}).get("schemas", {})
    if "HTTPValidationError" not in str(spec.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return spec


def error_body(detail: str, **extra: Any) -> dict[str, Any]:
    """An error answer's JSON body (`Error`); every error path builds it here."""
    return {"detail": detail, **{k: v for k, v in extra.items() if v is not None}}


class RulesRefOut(BaseModel):
    id: str
    version: str


class CallAccepted(BaseModel):
    id: str = Field(description="The service's id for the call (a UUID)")
    status: str
    external_id: str | None = None


class CallOut(BaseModel):
    id: str
    external_id: str | None
    agent_id: str
    call_date: date
    status: Literal["queued", "processing", "done", "failed"]
    failure_reason: str | None
    source: str
    input_kind: str
    channels: str
    channel: str | None = None
    rubric: RulesRefOut
    policies: RulesRefOut
    attempts: int
    created_at: datetime
    updated_at: datetime
    scorecard_url: str | None = None

    @classmethod
    def of(cls, call: StoredCall) -> CallOut:
        """Response body for a stored call."""
        return cls(
            id=call.id, external_id=call.external_id, agent_id=call.agent_id, call_date=call.call_date,
            status=call.status, failure_reason=call.failure_reason, source=call.source,
            input_kind=call.input_kind, channels=call.channels, channel=call.channel,
            rubric=RulesRefOut(id=call.rubric_id, version=call.rubric_version),
            policies=RulesRefOut(id=call.policy_pack_id, version=call.policy_pack_version),
            attempts=call.attempts, created_at=call.created_at, updated_at=call.updated_at,
            scorecard_url=f"/v1/calls/{call.id}/scorecard" if call.status == "done" else None,
        )


class ScorecardSummary(BaseModel):
    call_id: str
    external_id: str | None = Field(description="The id the call's sender gave it")
    version: int
    call_date: date
    score: float
    passed: bool
    auto_fail: bool
    rubric: RulesRefOut
    created_at: datetime

    @classmethod
    def of(cls, card: StoredScorecard, external_id: str | None) -> ScorecardSummary:
        """One line of an agent's list."""
        return cls(call_id=card.call_id, external_id=external_id, version=card.version,
                   call_date=card.call_date, score=card.score,
                   passed=card.passed, auto_fail=card.auto_fail,
                   rubric=RulesRefOut(id=card.rubric_id, version=card.rubric_version),
                   created_at=card.created_at)


class ResponseTimeOut(BaseModel):
    """Attainment of one response-time criterion over an agent's conversations on one channel."""

    rubric_id: str
    criterion_id: str
    title: str
    measure: Literal["longest", "first"]
    channel: str
    conversations: int = Field(description="Conversations where the criterion applied")
    within: int = Field(description="Conversations within the limit (a reviewer's override counts)")
    attainment: float | None = Field(description="Share of the conversations within the limit, 0..1")
    mean_wait_s: float | None = Field(description="Mean of the deciding waits, seconds")
    longest_wait_s: float | None = Field(description="Longest deciding wait, seconds")

    @classmethod
    def of(cls, r: ResponseRate) -> ResponseTimeOut:
        """One criterion and channel's attainment."""
        return cls(rubric_id=r.rubric_id, criterion_id=r.id, title=r.title,
                   measure=r.measure,  # type: ignore[arg-type]
                   channel=r.channel, conversations=r.conversations, within=r.within, attainment=r.attainment,
                   mean_wait_s=r.mean_wait_s, longest_wait_s=r.longest_wait_s)


class Aggregate(BaseModel):
    count: int
    mean_score: float | None
    pass_rate: float | None = Field(description="Share of calls that passed, 0..1")
    auto_fail_count: int
    # Left out when no response-time rule applied, so aggregates of calls keep their v1 shape.
    response_times: list[ResponseTimeOut] = Field(
        default_factory=list, exclude_if=lambda v: not v,
        description="Response-time attainment per criterion and channel (written conversations); absent "
                    "when none applied")


class AgentScorecards(BaseModel):
    agent_id: str
    date_from: date | None = Field(None, alias="from")
    date_to: date | None = Field(None, alias="to")
    aggregate: Aggregate
    scorecards: list[ScorecardSummary]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class RescanStarted(BaseModel):
    """The rescore run that rescans stored calls under a policy pack version just published."""

    id: str | None = Field(description="The run's id; None when it could not start (see `note`)")
    status: str
    url: str | None = Field(description="GET it for the impact once the run is done")
    note: str | None = None


class RulesOut(BaseModel):
    id: str
    version: str
    sha256: str
    created_at: datetime
    created: bool | None = None
    rescan: RescanStarted | None = Field(
        None, description="A new policy pack version: the rescan of the stored calls it changes")

    @classmethod
    def of(cls, rules: StoredRules, created: bool | None = None) -> RulesOut:
        """Response body for a stored rubric or policy pack."""
        return cls(id=rules.id, version=rules.version, sha256=rules.sha256, created_at=rules.created_at,
                   created=created, rescan=None)


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    database: str
    queue: str
    version: str


class CallForm(BaseModel):
    """The text fields of a call upload (multipart/form-data), beside the `audio` or `transcript` part."""

    model_config = ConfigDict(extra="ignore")

    agent_id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    call_date: date = Field(description="Day of the call, YYYY-MM-DD")
    rubric_id: str = Field(min_length=1, max_length=100)
    policy_pack_id: str = Field(min_length=1, max_length=100)
    call_id: str | None = Field(None, min_length=1, max_length=200, pattern=ID_PATTERN,
                                description="Your id for the call (not a UUID); resending it is safe")
    channels: Channels = "auto"
    channel: Literal["call", "chat", "email", "im"] | None = Field(
        None, description="How the conversation was held (default: as the transcript says, else chat for a "
                          "transcript and call for audio); response-time rules differ by channel")
    rubric_version: str | None = Field(None, max_length=50)
    policy_pack_version: str | None = Field(None, max_length=50)

    _day = field_validator("call_date", mode="before")(_call_day)
    _call_id = field_validator("call_id")(not_a_uuid)

    @classmethod
    def openapi(cls) -> dict[str, Any]:
        """The multipart request body as /openapi.json describes it: these fields plus the two file parts."""
        schema = cls.model_json_schema()
        fields = dict(schema["properties"])
        parts = {
            "audio": {"anyOf": [{"type": "string", "contentMediaType": "application/octet-stream"},
                                {"type": "null"}],
                      "title": "Audio", "description": "The recording (any format FFmpeg reads)"},
            "transcript": {"anyOf": [{"type": "string", "contentMediaType": "application/octet-stream"},
                                     {"type": "string"}, {"type": "null"}],
                           "title": "Transcript",
                           "description": "Instead of audio: JSON turns or text with Agent:/Customer: lines"},
        }
        first = ("agent_id", "call_date", "rubric_id", "policy_pack_id")
        schema["properties"] = {**{k: fields.pop(k) for k in first}, **parts, **fields}
        return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


class TelephonyEvent(BaseModel):
    """A finished call as a telephony system posts it."""

    model_config = ConfigDict(extra="ignore")

    external_call_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    agent_id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    start_time: datetime = Field(description="ISO 8601, 2026-10-20T09:15:00+02:00; its day is the call date")
    recording_url: str = Field(min_length=8, max_length=2000)
    channels: Channels = "auto"
    rubric_id: str = Field(min_length=1, max_length=100)
    policy_pack_id: str = Field(min_length=1, max_length=100)
    rubric_version: str | None = None
    policy_pack_version: str | None = None

    _external_call_id = field_validator("external_call_id")(not_a_uuid)

    @field_validator("start_time", mode="before")
    @classmethod
    def _iso_time(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _ISO_TIME.match(value):
            raise ValueError("write the time as ISO 8601, e.g. 2026-10-20T09:15:00+02:00")
        return value

    @field_validator("start_time")
    @classmethod
    def _sane_day(cls, value: datetime) -> datetime:
        try:
            check_call_date(value.date())
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value


ScorecardJSON = dict[str, Any]
