"""Supervisor and QA views: agents over a date range, one agent's report, the call list, CSV export.

Routes read through `storage.views` (latest scorecard version per call) and shape the answer;
they compute nothing themselves.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from qa_service.api.deps import CallIdPath, InputsDep, ReadOwnScoresKey, ReadScoresKey, RepoDep
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.api.schemas import Error, ResponseTimeOut
from qa_service.errors import InputError, NotFound
from qa_service.services import teams
from qa_service.services.calls import readable_call
from qa_service.services.exports import (
    CSV_MEDIA_TYPE,
    RangeNotSatisfiable,
    attachment,
    audio_type,
    csv_rows,
    redacted_audio,
    stored_body,
)
from qa_service.storage.views import (
    AgentReport,
    CallRow,
    CriterionRate,
    Filters,
    OverturnRate,
    Totals,
    Verdict,
    Views,
    WeekPoint,
)

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No or bad API key"},
    403: {"model": Error, "description": "The key's role may not read scorecards"},
    422: {"model": Error, "description": "A query parameter is invalid"},
}

CallStatus = Literal["queued", "processing", "done", "failed"]
DateFrom = Annotated[date | None, Query(alias="from", description="First call date, inclusive")]
DateTo = Annotated[date | None, Query(alias="to", description="Last call date, inclusive")]
VerdictQ = Annotated[Verdict | None, Query(description="Only calls that passed / failed")]
ViolationQ = Annotated[str | None, Query(max_length=200, description="Only calls with this violation id")]
RubricQ = Annotated[str | None, Query(max_length=100, description="Only calls scored with this rubric")]
TeamQ = Annotated[str | None, Query(max_length=100, description="Only calls of agents in this team on "
                                                                  "the call's date")]
VendorQ = Annotated[str | None, Query(max_length=100, description="Only calls of agents with this vendor on "
                                                                    "the call's date")]
def check_range(date_from: date | None, date_to: date | None) -> None:
    """Refuse a date range that ends before it starts."""
    if date_from and date_to and date_from > date_to:
        raise InputError("'from' is after 'to'")


# -- response bodies ---------------------------------------------------------------------------

class ViolationCounts(BaseModel):
    prohibited: int = 0
    outdated_policy: int = 0


class AgentOut(BaseModel):
    agent_id: str
    calls: int
    mean_score: float | None
    pass_rate: float | None = Field(description="Share of calls that passed, 0..1")
    auto_fails: int
    provisional: int = Field(0, description="FAILs resting on weak evidence that wait for a reviewer")
    violations: ViolationCounts

    @classmethod
    def of(cls, agent_id: str, t: Totals) -> AgentOut:
        """An agent's line from its totals."""
        return cls(agent_id=agent_id, calls=t.count, mean_score=t.mean_score, pass_rate=t.pass_rate,
                   auto_fails=t.auto_fail_count, provisional=t.provisional_count,
                   violations=ViolationCounts(**_known_kinds(t.violations)))


class AgentList(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    date_from: date | None = Field(None, serialization_alias="from")
    date_to: date | None = Field(None, serialization_alias="to")
    agents: list[AgentOut]
    page_size: int
    next_cursor: str | None


class AggregateOut(BaseModel):
    count: int
    mean_score: float | None
    pass_rate: float | None
    auto_fail_count: int
    provisional_count: int = Field(0, description="FAILs resting on weak evidence that wait for a reviewer")
    violations: ViolationCounts
    response_times: list[ResponseTimeOut] = Field(
        default_factory=list, exclude_if=lambda v: not v,
        description="Response-time attainment per criterion and channel; absent when none applied")
    overturns: list[OverturnOut] = Field(
        default_factory=list, exclude_if=lambda v: not v,
        description="Agents' disputes per criterion or violation id and how QA resolved them (overturn "
                    "rate: the share of resolved disputes overturned); absent when there were none")


class OverturnOut(BaseModel):
    rubric_id: str
    target: str = Field(description="criterion or violation")
    id: str
    disputes: int
    overturned: int
    upheld: int
    open: int
    overturn_rate: float | None = Field(description="Share of the resolved disputes overturned, 0..1")

    @classmethod
    def of(cls, r: OverturnRate) -> OverturnOut:
        """One rule's dispute counts."""
        return cls(rubric_id=r.rubric_id, target=r.target, id=r.id, disputes=r.disputes,
                   overturned=r.overturned, upheld=r.upheld, open=r.open, overturn_rate=r.overturn_rate)


class WeekOut(BaseModel):
    week: str = Field(description="ISO week, e.g. 2026-W45")
    week_start: date
    count: int
    mean_score: float
    pass_rate: float

    @classmethod
    def of(cls, w: WeekPoint) -> WeekOut:
        """One point of the weekly trend."""
        return cls(week=w.week, week_start=w.week_start, count=w.count, mean_score=w.mean_score,
                   pass_rate=w.pass_rate)


class CriterionOut(BaseModel):
    rubric_id: str
    id: str
    title: str
    section: str
    passed: int
    calls: int = Field(description="Calls where the criterion applied")
    pass_rate: float | None

    @classmethod
    def of(cls, c: CriterionRate) -> CriterionOut:
        """One criterion's pass rate."""
        return cls(rubric_id=c.rubric_id, id=c.id, title=c.title, section=c.section, passed=c.passed,
                   calls=c.total, pass_rate=c.pass_rate)


class CallItem(BaseModel):
    call_id: str
    external_id: str | None
    agent_id: str
    call_date: date
    status: CallStatus
    failure_reason: str | None
    rubric_id: str
    rubric_version: str
    scorecard_version: int | None
    score: float | None
    passed: bool | None
    auto_fail: bool | None
    provisional: bool = Field(False, description="A FAIL resting on weak evidence, waiting for a reviewer")
    violations: int | None
    scorecard_url: str | None

    @classmethod
    def of(cls, c: CallRow) -> CallItem:
        """A call list line."""
        return cls(call_id=c.call_id, external_id=c.external_id, agent_id=c.agent_id, call_date=c.call_date,
                   status=c.status, failure_reason=c.failure_reason,  # type: ignore[arg-type]
                   rubric_id=c.rubric_id, rubric_version=c.rubric_version, scorecard_version=c.version,
                   score=c.score, passed=c.passed, auto_fail=c.auto_fail, provisional=c.provisional,
                   violations=c.violation_count,
                   scorecard_url=f"/v1/calls/{c.call_id}/scorecard" if c.version is not None else None)


class CallPage(BaseModel):
    """A page of calls, and the cursor of the next page (None on the last)."""

    page_size: int
    next_cursor: str | None
    items: list[CallItem]


class AgentSummaryOut(BaseModel):
    """The aggregate, trend and criteria cover the date range and rubric; verdict and violation
    narrow only the paged list of scorecards."""

    model_config = ConfigDict(serialize_by_alias=True)

    agent_id: str
    date_from: date | None = Field(None, serialization_alias="from")
    date_to: date | None = Field(None, serialization_alias="to")
    rubric_id: str | None
    aggregate: AggregateOut
    trend: list[WeekOut]
    criteria: list[CriterionOut]
    page_size: int
    next_cursor: str | None
    scorecards: list[CallItem]

    @classmethod
    def of(cls, r: AgentReport) -> AgentSummaryOut:
        """Response body for an agent report."""
        t = r.totals
        return cls(agent_id=r.agent_id, date_from=r.filters.date_from, date_to=r.filters.date_to,
                   rubric_id=r.filters.rubric_id,
                   aggregate=AggregateOut(count=t.count, mean_score=t.mean_score, pass_rate=t.pass_rate,
                                          auto_fail_count=t.auto_fail_count,
                                          provisional_count=t.provisional_count,
                                          violations=ViolationCounts(**_known_kinds(t.violations)),
                                          response_times=[ResponseTimeOut.of(x) for x in r.responses],
                                          overturns=[OverturnOut.of(x) for x in r.overturns]),
                   trend=[WeekOut.of(w) for w in r.trend], criteria=[CriterionOut.of(c) for c in r.criteria],
                   page_size=r.calls.page_size, next_cursor=r.calls.next_cursor,
                   scorecards=[CallItem.of(c) for c in r.calls.items])


def _known_kinds(counts: dict[str, int]) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in ("prohibited", "outdated_policy")}


# -- routes ------------------------------------------------------------------------------------

@router.get("/v1/agents", response_model=AgentList, tags=["agents"], responses=_ERRORS, dependencies=PAGED)
def list_agents(repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None, date_to: DateTo = None,
                team: TeamQ = None, vendor: VendorQ = None, cursor: CursorQ = None,
                page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> AgentList:
    """Agents with scored calls in the range, by agent id, a page at a time: calls, mean score, pass
    rate, auto-fails, violations (only the calls of a team or vendor with `team=` / `vendor=`)."""
    check_range(date_from, date_to)
    page = repo.views.agents_page(teams.scoped(key, Filters(date_from=date_from, date_to=date_to, team=team,
                                                            vendor=vendor)), cursor, page_size)
    return AgentList(date_from=date_from, date_to=date_to,
                     agents=[AgentOut.of(a.agent_id, a.totals) for a in page.items],
                     page_size=page.page_size, next_cursor=page.next_cursor)


@router.get("/v1/agents/{agent_id}/summary", response_model=AgentSummaryOut, tags=["agents"],
            responses=_ERRORS, dependencies=PAGED)
def agent_summary(agent_id: str, repo: RepoDep, key: ReadOwnScoresKey, date_from: DateFrom = None,
                  date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                  violation: ViolationQ = None, cursor: CursorQ = None,
                  page_size: PageSizeQ = 50) -> AgentSummaryOut:
    """An agent's aggregate, weekly trend (ISO weeks), pass rate per criterion and a page of scorecards."""
    check_range(date_from, date_to)
    teams.readable_agent(repo, key, agent_id)
    filters = teams.scoped(key, Filters(date_from=date_from, date_to=date_to, rubric_id=rubric_id,
                                        verdict=verdict, violation=violation))
    return AgentSummaryOut.of(repo.views.agent_report(agent_id, filters, cursor, page_size))


_CSV: dict[int | str, dict[str, Any]] = {
    200: {"description": "One row per scored call", "content": {"text/csv": {}}}}


@router.get("/v1/agents/{agent_id}/scorecards.csv", tags=["agents"], response_class=StreamingResponse,
            responses={**_ERRORS, **_CSV})
def agent_scorecards_csv(agent_id: str, repo: RepoDep, key: ReadOwnScoresKey, date_from: DateFrom = None,
                         date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                         violation: ViolationQ = None) -> StreamingResponse:
    """An agent's latest scorecards as CSV, newest call first."""
    check_range(date_from, date_to)
    teams.readable_agent(repo, key, agent_id)
    filters = teams.scoped(key, Filters(agent_id=agent_id, date_from=date_from, date_to=date_to,
                                        rubric_id=rubric_id, verdict=verdict, violation=violation))
    return _csv(repo.views, filters, f"{_safe_name(agent_id)}-scorecards.csv")


@router.get("/v1/calls", response_model=CallPage, tags=["calls"], responses={**_ERRORS, **_CSV},
            dependencies=PAGED)
def list_calls(repo: RepoDep, key: ReadOwnScoresKey,
               agent_id: Annotated[str | None, Query(max_length=100)] = None,
               external_id: Annotated[str | None, Query(
                   max_length=200, description="Only the call its sender knows by this id")] = None,
               date_from: DateFrom = None,
               date_to: DateTo = None, verdict: VerdictQ = None, violation: ViolationQ = None,
               status: Annotated[CallStatus | None, Query()] = None, rubric_id: RubricQ = None,
               team: TeamQ = None, vendor: VendorQ = None,
               cursor: CursorQ = None, page_size: PageSizeQ = 50,
               format: Annotated[Literal["json", "csv"], Query(description="csv: scored calls, all pages")]
               = "json") -> Any:
    """Calls newest first with their latest verdict, filtered and paged; `format=csv` exports scorecards."""
    check_range(date_from, date_to)
    filters = teams.scoped(key, Filters(agent_id=agent_id, date_from=date_from, date_to=date_to,
                                        verdict=verdict, violation=violation, status=status,
                                        rubric_id=rubric_id, team=team, vendor=vendor,
                                        external_id=external_id))
    views = repo.views
    if format == "csv":
        return _csv(views, filters, "scorecards.csv")
    result = views.calls(filters, cursor, page_size)
    return CallPage(page_size=result.page_size, next_cursor=result.next_cursor,
                    items=[CallItem.of(c) for c in result.items])


@router.get("/v1/calls/{call_id}/audio", tags=["calls"], response_class=StreamingResponse,
            responses={**_ERRORS, 200: {"content": {"audio/*": {}}, "description": "The redacted recording"},
                       206: {"content": {"audio/*": {}}, "description": "The byte range asked for"},
                       416: {"description": "The range asked for is outside the recording"},
                       404: {"model": Error, "description": "No such call, or no redacted audio is kept"}})
def call_audio(call_id: CallIdPath, request: Request, repo: RepoDep, inputs: InputsDep,
               key: ReadOwnScoresKey) -> Response:
    """The call's redacted recording, when one is kept; a `Range: bytes=...` request gets that part
    (206), so a player seeks without fetching the whole recording, from a local folder or an object
    store alike."""
    ref = redacted_audio(inputs, readable_call(repo, key, call_id).id)
    if ref is None:
        raise NotFound("no redacted audio is kept for this call")
    try:
        body = stored_body(inputs, ref, request.headers.get("range"))
    except RangeNotSatisfiable as exc:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{exc.size}"})
    return StreamingResponse(body.chunks, status_code=body.status, headers=body.headers,
                             media_type=audio_type(ref))


def _csv(views: Views, filters: Filters, filename: str) -> StreamingResponse:
    return StreamingResponse(csv_rows(views, filters), media_type=CSV_MEDIA_TYPE,
                             headers=attachment(filename))


def _safe_name(value: str) -> str:
    # ASCII only: the name goes into a Content-Disposition header, which must be latin-1.
    safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "._-" else "_" for ch in value)
    return safe[:80] or "agent"

