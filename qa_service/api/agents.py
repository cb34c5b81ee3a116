"""Supervisor and QA views: agents over a date range, one agent's report, the call list, CSV export.

Routes read through `storage.views` (latest scorecard version per call) and shape the answer;
they compute nothing themselves.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from qa_service.api.deps import ReadScoresKey, RepoDep, SettingsDep
from qa_service.api.schemas import Error
from qa_service.errors import InputError, NotFound
from qa_service.storage.inputs import call_dir
from qa_service.storage.repository import Repository
from qa_service.storage.views import (
    MAX_PAGE_SIZE,
    AgentReport,
    CallRow,
    CriterionRate,
    Filters,
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

# Redacted audio a worker may leave beside a call's input; the browser plays these natively.
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg",
               ".flac": "audio/flac", ".m4a": "audio/mp4", ".webm": "audio/webm"}

CallStatus = Literal["queued", "processing", "done", "failed"]
DateFrom = Annotated[date | None, Query(alias="from", description="First call date, inclusive")]
DateTo = Annotated[date | None, Query(alias="to", description="Last call date, inclusive")]
VerdictQ = Annotated[Verdict | None, Query(description="Only calls that passed / failed")]
ViolationQ = Annotated[str | None, Query(max_length=200, description="Only calls with this violation id")]
RubricQ = Annotated[str | None, Query(max_length=100, description="Only calls scored with this rubric")]
PageQ = Annotated[int, Query(ge=1)]
PageSizeQ = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


def views_of(repo: Repository) -> Views:
    """Read-side views over the repository's database."""
    engine = getattr(repo, "engine", None)
    if engine is None:
        raise TypeError("supervisor views need the SQL repository")
    return Views(engine)


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


class AggregateOut(BaseModel):
    count: int
    mean_score: float | None
    pass_rate: float | None
    auto_fail_count: int
    provisional_count: int = Field(0, description="FAILs resting on weak evidence that wait for a reviewer")
    violations: ViolationCounts


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
    page: int
    page_size: int
    total: int
    pages: int
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
    page: int
    page_size: int
    total: int
    pages: int
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
                                          violations=ViolationCounts(**_known_kinds(t.violations))),
                   trend=[WeekOut.of(w) for w in r.trend], criteria=[CriterionOut.of(c) for c in r.criteria],
                   page=r.calls.page, page_size=r.calls.page_size, total=r.calls.total, pages=r.calls.pages,
                   scorecards=[CallItem.of(c) for c in r.calls.items])


def _known_kinds(counts: dict[str, int]) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in ("prohibited", "outdated_policy")}


# -- routes ------------------------------------------------------------------------------------

@router.get("/v1/agents", response_model=AgentList, tags=["agents"], responses=_ERRORS)
def list_agents(repo: RepoDep, _key: ReadScoresKey, date_from: DateFrom = None,
                date_to: DateTo = None) -> AgentList:
    """Every agent with scored calls in the range: calls, mean score, pass rate, auto-fails, violations."""
    check_range(date_from, date_to)
    rows = views_of(repo).agents(Filters(date_from=date_from, date_to=date_to))
    return AgentList(date_from=date_from, date_to=date_to,
                     agents=[AgentOut.of(a.agent_id, a.totals) for a in rows])


@router.get("/v1/agents/{agent_id}/summary", response_model=AgentSummaryOut, tags=["agents"],
            responses=_ERRORS)
def agent_summary(agent_id: str, repo: RepoDep, _key: ReadScoresKey, date_from: DateFrom = None,
                  date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                  violation: ViolationQ = None, page: PageQ = 1,
                  page_size: PageSizeQ = 50) -> AgentSummaryOut:
    """An agent's aggregate, weekly trend (ISO weeks), pass rate per criterion and a page of scorecards."""
    check_range(date_from, date_to)
    filters = Filters(date_from=date_from, date_to=date_to, rubric_id=rubric_id, verdict=verdict,
                      violation=violation)
    return AgentSummaryOut.of(views_of(repo).agent_report(agent_id, filters, page, page_size))


_CSV: dict[int | str, dict[str, Any]] = {
    200: {"description": "One row per scored call", "content": {"text/csv": {}}}}


@router.get("/v1/agents/{agent_id}/scorecards.csv", tags=["agents"], response_class=StreamingResponse,
            responses={**_ERRORS, **_CSV})
def agent_scorecards_csv(agent_id: str, repo: RepoDep, _key: ReadScoresKey, date_from: DateFrom = None,
                         date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                         violation: ViolationQ = None) -> StreamingResponse:
    """An agent's latest scorecards as CSV, newest call first."""
    check_range(date_from, date_to)
    filters = Filters(agent_id=agent_id, date_from=date_from, date_to=date_to, rubric_id=rubric_id,
                      verdict=verdict, violation=violation)
    return csv_response(views_of(repo), filters, f"{_safe_name(agent_id)}-scorecards.csv")


@router.get("/v1/calls", response_model=CallPage, tags=["calls"], responses={**_ERRORS, **_CSV})
def list_calls(repo: RepoDep, _key: ReadScoresKey,
               agent_id: Annotated[str | None, Query(max_length=100)] = None, date_from: DateFrom = None,
               date_to: DateTo = None, verdict: VerdictQ = None, violation: ViolationQ = None,
               status: Annotated[CallStatus | None, Query()] = None, rubric_id: RubricQ = None,
               page: PageQ = 1, page_size: PageSizeQ = 50,
               format: Annotated[Literal["json", "csv"], Query(description="csv: scored calls, all pages")]
               = "json") -> Any:
    """Calls newest first with their latest verdict, filtered and paged; `format=csv` exports scorecards."""
    check_range(date_from, date_to)
    filters = Filters(agent_id=agent_id, date_from=date_from, date_to=date_to, verdict=verdict,
                      violation=violation, status=status, rubric_id=rubric_id)
    views = views_of(repo)
    if format == "csv":
        return csv_response(views, filters, "scorecards.csv")
    result = views.calls(filters, page, page_size)
    return CallPage(page=result.page, page_size=result.page_size, total=result.total, pages=result.pages,
                    items=[CallItem.of(c) for c in result.items])


@router.get("/v1/calls/{call_id}/audio", tags=["calls"], response_class=FileResponse,
            responses={**_ERRORS, 200: {"content": {"audio/*": {}}, "description": "The redacted recording"},
                       404: {"model": Error, "description": "No such call, or no redacted audio is kept"}})
def call_audio(call_id: str, repo: RepoDep, settings: SettingsDep, _key: ReadScoresKey) -> FileResponse:
    """The call's redacted recording, when one is kept (supports Range requests for seeking)."""
    path = redacted_audio(settings.storage_dir, repo.get_call(call_id).id)
    if path is None:
        raise NotFound("no redacted audio is kept for this call")
    return FileResponse(path, media_type=AUDIO_TYPES[path.suffix.lower()])


def redacted_audio(storage_dir: Path, call_id: str) -> Path | None:
    """`<storage>/<call id>/redacted.<ext>` when it exists; None otherwise."""
    try:
        folder = call_dir(storage_dir, call_id)
    except ValueError:
        return None
    for suffix in AUDIO_TYPES:
        path = folder / f"redacted{suffix}"
        if path.is_file():
            return path
    return None


# -- CSV ---------------------------------------------------------------------------------------

CSV_COLUMNS = ("call_id", "external_id", "agent_id", "call_date", "rubric_id", "rubric_version",
               "scorecard_version", "score", "passed", "auto_fail", "prohibited", "outdated_policy",
               "violation_ids", "failed_criteria")


def csv_response(views: Views, filters: Filters, filename: str) -> StreamingResponse:
    """Stream the filtered latest scorecards as CSV rows."""
    return StreamingResponse(_csv_rows(views, filters), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _csv_rows(views: Views, filters: Filters) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def flush() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for row, data in views.scorecards(filters):
        violations = data.get("violations") or []
        kinds = [v.get("kind") for v in violations]
        failed = [str(c.get("id")) for c in data.get("criteria") or []
                  if c.get("applicable", True) and not c.get("passed")]
        writer.writerow([
            row.call_id, _cell(row.external_id or ""), _cell(row.agent_id), row.call_date.isoformat(),
            _cell(row.rubric_id), _cell(row.rubric_version), row.version, row.score,
            "true" if row.passed else "false", "true" if row.auto_fail else "false",
            kinds.count("prohibited"), kinds.count("outdated_policy"),
            _cell(";".join(str(v.get("id")) for v in violations)), _cell(";".join(failed)),
        ])
        yield flush()


def _cell(value: str) -> str:
    # A spreadsheet runs cells starting with these as formulas; a leading quote keeps them text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _safe_name(value: str) -> str:
    # ASCII only: the name goes into a Content-Disposition header, which must be latin-1.
    safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "._-" else "_" for ch in value)
    return safe[:80] or "agent"

