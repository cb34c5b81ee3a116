"""Teams and vendors: memberships in (a CSV file or JSON) and out, and aggregates by team and by vendor.

A call counts for the team and vendor its agent was in on the call's date. Admin and unscoped QA keys
write memberships; readers see the teams and vendors of their scope only. The use cases live in
`services.teams`; the views in `storage.views`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from qa_service.access.keys import MANAGE_TEAMS, requires
from qa_service.api.agents import (
    _CSV,
    _ERRORS,
    AgentOut,
    AggregateOut,
    CallItem,
    CriterionOut,
    DateFrom,
    DateTo,
    RubricQ,
    VerdictQ,
    ViolationQ,
    WeekOut,
    _csv,
    _known_kinds,
    _safe_name,
    check_range,
)
from qa_service.api.certification import ImportOut, records_in, refused
from qa_service.api.deps import ReadScoresKey, RepoDep
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.errors import Forbidden
from qa_service.services import teams
from qa_service.services.imports import ImportRefused
from qa_service.storage.repository import Membership, StoredKey
from qa_service.storage.views import Filters

router = APIRouter(tags=["teams"])

ManageKey = Annotated[StoredKey, requires(*MANAGE_TEAMS)]


class MembershipOut(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    agent_id: str
    team: str
    vendor: str
    since: str = Field(serialization_alias="from")
    until: str | None = Field(serialization_alias="to", description="Last day, inclusive; null: still there")

    @classmethod
    def of(cls, m: Membership) -> MembershipOut:
        """A membership's public face."""
        return cls(agent_id=m.agent_id, team=m.team, vendor=m.vendor, since=m.since.isoformat(),
                   until=m.until.isoformat() if m.until else None)


class GroupOut(BaseModel):
    name: str
    calls: int
    mean_score: float | None
    pass_rate: float | None = Field(description="Share of calls that passed, 0..1")
    auto_fails: int
    provisional: int
    violations: dict[str, int]


class GroupList(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    date_from: Any = Field(None, serialization_alias="from")
    date_to: Any = Field(None, serialization_alias="to")
    groups: list[GroupOut]
    page_size: int
    next_cursor: str | None


class GroupReportOut(BaseModel):
    """The aggregate, trend and criteria cover the date range and rubric; verdict and violation narrow
    only the paged list of scorecards."""

    model_config = ConfigDict(serialize_by_alias=True)

    team: str | None = None
    vendor: str | None = None
    date_from: Any = Field(None, serialization_alias="from")
    date_to: Any = Field(None, serialization_alias="to")
    rubric_id: str | None
    aggregate: AggregateOut
    trend: list[WeekOut]
    criteria: list[CriterionOut]
    page_size: int
    next_cursor: str | None
    scorecards: list[CallItem]


def _no_scope(key: StoredKey) -> None:
    if key.scope is not None:
        raise Forbidden("a key scoped to teams or vendors cannot change memberships")


@router.post("/v1/memberships", response_model=ImportOut,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}},
                 "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}},
             responses={**_ERRORS, 422: {"description": "Bad lines (each named); nothing was stored"}})
async def post_memberships(request: Request, repo: RepoDep, key: ManageKey) -> Any:
    """Store memberships from a CSV file (agent_id,team,vendor,from,to; `to` empty while the agent is still
    there) or a JSON list of such records: all of them, or none when a line is bad. A period that starts
    after an agent's open one closes it the day before."""
    _no_scope(key)
    text, rows = await records_in(request)
    try:
        items = teams.read_memberships(text) if text is not None else teams.check_items(rows or [])
        counts = await run_in_threadpool(lambda: teams.put_memberships(store=repo, items=items))
    except ImportRefused as exc:
        return refused(exc)
    return ImportOut.of(counts)


class MembershipList(BaseModel):
    memberships: list[MembershipOut]
    page_size: int
    next_cursor: str | None = Field(description="Pass as cursor= for the next page; null on the last")


@router.get("/v1/memberships", response_model=MembershipList, dependencies=PAGED, responses=_ERRORS)
def list_memberships(repo: RepoDep, key: ReadScoresKey,
                     agent_id: Annotated[str | None, Query(max_length=100)] = None, cursor: CursorQ = None,
                     page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> MembershipList:
    """Memberships (one agent's), by agent and start date, a page at a time; a scoped key sees those
    inside its scope."""
    found = repo.teams.membership_page(agent_id, key.scope, cursor, page_size)
    return MembershipList(memberships=[MembershipOut.of(m) for m in found.items], page_size=found.page_size,
                          next_cursor=found.next_cursor)


def _groups(by: teams.Group, repo: Any, key: StoredKey, date_from: Any, date_to: Any, cursor: str | None,
            page_size: int) -> GroupList:
    check_range(date_from, date_to)
    f = teams.scoped(key, Filters(date_from=date_from, date_to=date_to))
    page = repo.views.groups_page(f, by, cursor, page_size)
    out = []
    for g in page.items:
        a = AgentOut.of(g.name, g.totals)
        out.append(GroupOut(name=g.name, calls=a.calls, mean_score=a.mean_score, pass_rate=a.pass_rate,
                            auto_fails=a.auto_fails, provisional=a.provisional,
                            violations=_known_kinds(g.totals.violations)))
    return GroupList(date_from=date_from, date_to=date_to, groups=out, page_size=page.page_size,
                     next_cursor=page.next_cursor)


@router.get("/v1/teams", response_model=GroupList, responses=_ERRORS, dependencies=PAGED)
def list_teams(repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None, date_to: DateTo = None,
               cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> GroupList:
    """Teams with scored calls in the range, by name (each call counted for its agent's team on that
    day)."""
    return _groups("team", repo, key, date_from, date_to, cursor, page_size)


@router.get("/v1/vendors", response_model=GroupList, responses=_ERRORS, dependencies=PAGED)
def list_vendors(repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None, date_to: DateTo = None,
                 cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> GroupList:
    """Vendors with scored calls in the range, by name (each call counted for its agent's vendor on that
    day)."""
    return _groups("vendor", repo, key, date_from, date_to, cursor, page_size)


def _report(by: teams.Group, name: str, repo: Any, key: StoredKey, date_from: Any, date_to: Any,
            rubric_id: str | None, verdict: Any, violation: str | None, cursor: str | None,
            page_size: int) -> GroupReportOut:
    check_range(date_from, date_to)
    f = Filters(date_from=date_from, date_to=date_to, rubric_id=rubric_id, verdict=verdict,
                violation=violation)
    r = teams.group_report(store=repo, key=key, by=by, name=name, f=f, cursor=cursor, page_size=page_size)
    t = r.totals
    return GroupReportOut(
        **{by: name}, date_from=date_from, date_to=date_to, rubric_id=rubric_id,
        aggregate=AggregateOut(count=t.count, mean_score=t.mean_score, pass_rate=t.pass_rate,
                               auto_fail_count=t.auto_fail_count, provisional_count=t.provisional_count,
                               violations=_known_kinds(t.violations)),  # type: ignore[arg-type]
        trend=[WeekOut.of(w) for w in r.trend], criteria=[CriterionOut.of(c) for c in r.criteria],
        page_size=r.calls.page_size, next_cursor=r.calls.next_cursor,
        scorecards=[CallItem.of(c) for c in r.calls.items])


@router.get("/v1/teams/{team}/scorecards", response_model=GroupReportOut, responses=_ERRORS,
            dependencies=PAGED)
def team_scorecards(team: str, repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None,
                    date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                    violation: ViolationQ = None, cursor: CursorQ = None,
                    page_size: PageSizeQ = 50) -> GroupReportOut:
    """A team's aggregate, weekly trend, pass rate per criterion and a page of its calls."""
    return _report("team", team, repo, key, date_from, date_to, rubric_id, verdict, violation, cursor,
                   page_size)


@router.get("/v1/vendors/{vendor}/scorecards", response_model=GroupReportOut, responses=_ERRORS,
            dependencies=PAGED)
def vendor_scorecards(vendor: str, repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None,
                      date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                      violation: ViolationQ = None, cursor: CursorQ = None,
                      page_size: PageSizeQ = 50) -> GroupReportOut:
    """A vendor's aggregate, weekly trend, pass rate per criterion and a page of its calls."""
    return _report("vendor", vendor, repo, key, date_from, date_to, rubric_id, verdict, violation, cursor,
                   page_size)


def _group_csv(by: teams.Group, name: str, repo: Any, key: StoredKey, date_from: Any, date_to: Any,
               rubric_id: str | None, verdict: Any, violation: str | None) -> StreamingResponse:
    check_range(date_from, date_to)
    teams.readable_group(key, by, name)
    f = teams.scoped(key, teams.of_group(Filters(date_from=date_from, date_to=date_to, rubric_id=rubric_id,
                                                 verdict=verdict, violation=violation), by, name))
    return _csv(repo.views, f, f"{_safe_name(name)}-scorecards.csv")


@router.get("/v1/teams/{team}/scorecards.csv", response_class=StreamingResponse,
            responses={**_ERRORS, **_CSV})
def team_scorecards_csv(team: str, repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None,
                        date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                        violation: ViolationQ = None) -> StreamingResponse:
    """A team's latest scorecards as CSV, newest call first."""
    return _group_csv("team", team, repo, key, date_from, date_to, rubric_id, verdict, violation)


@router.get("/v1/vendors/{vendor}/scorecards.csv", response_class=StreamingResponse,
            responses={**_ERRORS, **_CSV})
def vendor_scorecards_csv(vendor: str, repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None,
                          date_to: DateTo = None, rubric_id: RubricQ = None, verdict: VerdictQ = None,
                          violation: ViolationQ = None) -> StreamingResponse:
    """A vendor's latest scorecards as CSV, newest call first."""
    return _group_csv("vendor", vendor, repo, key, date_from, date_to, rubric_id, verdict, violation)

