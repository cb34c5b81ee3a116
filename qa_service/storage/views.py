"""Read-side queries for supervisors and QA staff: call listings and aggregates over stored scorecards.

Every view works on the latest scorecard version of each call (rescoring adds versions; only the
newest counts). The agent, team and vendor aggregates and the weekly trend add up the rollup rows per
agent, call date and rubric that the storage layer keeps on every write (`storage.rollups`): a date
range, rubric, team, vendor or key scope is a condition on those rows, so their cost follows the
number of agent-days, not of scorecards. A verdict or violation narrowing needs each scorecard and
reads the scorecards, as do the criterion, response-time and violation-id views, with the database's
own JSON functions (SQLite `json_each`/`json_extract`, PostgreSQL `jsonb_array_elements` and `->>`),
so no scorecard travels to Python for a listing or an aggregate; CSV export streams them.

Listings page by keyset: a cursor names the last call shown, and the next page starts after it in the
listing's order (`Page`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql

from qa_service.storage import paging, rollups
from qa_service.storage import tables as t
from qa_service.storage.repository import Scope
from qa_service.storage.teams import member_on, scope_conditions

Verdict = Literal["pass", "fail"]
VIOLATION_KINDS: tuple[str, ...] = ("prohibited", "outdated_policy")


@dataclass(frozen=True)
class Filters:
    """Which calls a view covers; None means no restriction. Dates are call dates, inclusive."""

    agent_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    rubric_id: str | None = None
    verdict: Verdict | None = None
    violation: str | None = None
    status: str | None = None
    # Calls of agents in this team / with this vendor on the call's date.
    team: str | None = None
    vendor: str | None = None
    # The call its sender knows by this id (listings of calls only).
    external_id: str | None = None
    # The reader's scope (its key's teams and vendors): None reads every call. Every door sets it from
    # the key (`services.teams.scoped`); it is kept by `scope()` and everything below.
    allowed: Scope | None = None

    def scope(self) -> Filters:
        """The same agent, dates, rubric, team and vendor without the verdict and violation narrowing."""
        return Filters(agent_id=self.agent_id, date_from=self.date_from, date_to=self.date_to,
                       rubric_id=self.rubric_id, team=self.team, vendor=self.vendor, allowed=self.allowed)

    @property
    def own_agent(self) -> str | None:
        """The agent whose own calls alone the reader reads (an agent's key), else None."""
        return self.allowed.agent if self.allowed is not None else None

    def membership_scopes(self) -> list[Scope]:
        """The membership conditions a call must meet on its date: the reader's scope, team and vendor."""
        found = [self.allowed] if self.allowed is not None and self.allowed.by_membership else []
        if self.team is not None or self.vendor is not None:
            found.append(Scope(teams=(self.team,) if self.team is not None else (),
                               vendors=(self.vendor,) if self.vendor is not None else ()))
        return found


@dataclass(frozen=True)
class Totals:
    """Aggregate over a set of scored calls."""

    count: int
    mean_score: float | None
    pass_rate: float | None
    auto_fail_count: int
    violations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIOLATION_KINDS, 0))
    # FAILs resting on weak evidence that no reviewer has ruled on yet (counted in the pass rate as fails).
    provisional_count: int = 0


@dataclass(frozen=True)
class AgentTotals:
    """One agent's line in the agent list."""

    agent_id: str
    totals: Totals


@dataclass(frozen=True)
class GroupTotals:
    """One team's or vendor's line in a comparison."""

    name: str
    totals: Totals


@dataclass(frozen=True)
class WeekPoint:
    """One ISO week of an agent's trend."""

    week: str
    week_start: date
    count: int
    mean_score: float
    pass_rate: float


@dataclass(frozen=True)
class CriterionRate:
    """How often one rubric criterion passed on the calls where it applied."""

    rubric_id: str
    id: str
    title: str
    section: str
    passed: int
    total: int

    @property
    def pass_rate(self) -> float | None:
        """Share of applicable calls that passed the criterion, 0..1."""
        return round(self.passed / self.total, 4) if self.total else None


@dataclass(frozen=True)
class ResponseRate:
    """How often one response-time criterion was kept, over the conversations of one channel where it
    applied: the verdict after review where a reviewer overrode it, and the deciding waits."""

    rubric_id: str
    id: str
    title: str
    measure: str  # longest | first
    channel: str
    conversations: int
    within: int
    mean_wait_s: float | None  # over the conversations with a reply to time
    longest_wait_s: float | None

    @property
    def attainment(self) -> float | None:
        """Share of the conversations within the rule, 0..1."""
        return round(self.within / self.conversations, 4) if self.conversations else None


@dataclass(frozen=True)
class OverturnRate:
    """How agents' disputes of one criterion or violation id ended: a rule QA often overturns is a bad
    rule (or a badly recognised one)."""

    rubric_id: str
    target: str  # criterion | violation
    id: str
    disputes: int
    overturned: int
    upheld: int
    open: int

    @property
    def resolved(self) -> int:
        """Disputes QA has resolved."""
        return self.overturned + self.upheld

    @property
    def overturn_rate(self) -> float | None:
        """Share of the resolved disputes that QA overturned, 0..1 (None while none is resolved)."""
        return round(self.overturned / self.resolved, 4) if self.resolved else None


@dataclass(frozen=True)
class CallRow:
    """A call with its latest scorecard's headline numbers (None while it is not scored)."""

    call_id: str
    external_id: str | None
    agent_id: str
    call_date: date
    status: str
    failure_reason: str | None
    created_at: datetime
    version: int | None
    score: float | None
    passed: bool | None
    auto_fail: bool | None
    rubric_id: str
    rubric_version: str
    violation_count: int | None
    provisional: bool = False  # a FAIL resting on weak evidence, waiting for a reviewer


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest call first, and the cursor of the page after it (None: the last).

    Pages are read by keyset: a cursor names the last call of the page before, and the next page starts
    after it in the listing's order (call date, then time received, then id, all descending), so a page
    deep in the list costs what the first does and calls arriving meanwhile shift nothing."""

    items: list[CallRow]
    page_size: int
    next_cursor: str | None = None


@dataclass(frozen=True)
class AgentReport:
    """Everything the agent view shows: aggregate, weekly trend, criteria and a page of calls."""

    agent_id: str
    filters: Filters
    totals: Totals
    trend: list[WeekPoint]
    criteria: list[CriterionRate]
    calls: Page
    responses: list[ResponseRate] = field(default_factory=list)  # response-time attainment
    overturns: list[OverturnRate] = field(default_factory=list)  # the agent's disputes, per rule


@dataclass(frozen=True)
class ServiceCounts:
    """Counts for monitoring: calls by status and scorecards stored."""

    calls_by_status: dict[str, int]
    scorecards: int
    scored_calls: int


# Calls, newest first: by call date, time received and id.
CALLS: paging.Listing[CallRow] = paging.Listing(
    "calls", (date, datetime, str), lambda c: (c.call_date, c.created_at, c.call_id), uuid_id=True)
# Agents by id; teams and vendors by name.
AGENTS: paging.Listing[AgentTotals] = paging.Listing("agents", (str,), lambda a: (a.agent_id,))
GROUPS: dict[str, paging.Listing[GroupTotals]] = {
    by: paging.Listing(f"{by}s", (str,), lambda g: (g.name,)) for by in ("team", "vendor")}


def encode_cursor(call_date: date, created_at: datetime, call_id: str) -> str:
    """The opaque cursor naming a call's place in the listing order."""
    return paging.encode("calls", (call_date, created_at, call_id))


def decode_cursor(cursor: str) -> tuple[date, datetime, str]:
    """The call date, time received and id a cursor names; InputError for anything else."""
    day, at, call_id = CALLS.decode(cursor)
    return day, at, call_id


def of_group(f: Filters, by: Literal["team", "vendor"], name: str) -> Filters:
    """The filters narrowed to one team or vendor."""
    return dataclasses.replace(f, team=name) if by == "team" else dataclasses.replace(f, vendor=name)


def _after(column: Any, value: str | None) -> list[Any]:
    """The condition that keeps a listing's rows after a cursor's key (none without one)."""
    return [column > value] if value is not None else []


def _round(value: Any, digits: int) -> float | None:
    return round(float(value), digits) if value is not None else None


class Views:
    """Read-only queries over the SQL repository's tables; shares its engine."""

    def __init__(self, engine: Engine, *, use_rollups: bool = True):
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        # False: every aggregate reads the scorecards themselves (to check the rollup against, and to
        # measure what it saves).
        self.use_rollups = use_rollups

    # -- JSON inside scorecards, per dialect ---------------------------------------------------

    def _elements(self, key: str) -> Any:
        """A table-valued function yielding each element of `data[key]` of the scorecard row in scope;
        for "violations", those that count after review where a reviewer changed them."""
        if key == "violations":
            return rollups.violation_elements(self.postgres)
        if self.postgres:
            array = t.scorecards.c.data.op("->")(sa.literal_column(f"'{key}'"))
            return sa.func.jsonb_array_elements(array).table_valued("value", joins_implicitly=True)
        return sa.func.json_each(t.scorecards.c.data, f"$.{key}").table_valued("value", joins_implicitly=True)

    def _text(self, element: Any, key: str) -> Any:
        return rollups.element_text(element, key, self.postgres)

    def _true(self, element: Any, key: str, *, default: bool) -> Any:
        """SQL condition: the element's boolean `key` is true (missing keys count as `default`)."""
        if self.postgres:
            value = sa.func.coalesce(self._text(element, key), "true" if default else "false")
            return value == "true"
        # SQLite's json_extract gives JSON true/false as 1/0.
        return sa.func.coalesce(sa.func.json_extract(element.c.value, f"$.{key}"), 1 if default else 0) == 1

    def _array_length(self, key: str) -> Any:
        data = t.scorecards.c.data
        if self.postgres:
            array = data.op("->")(sa.literal_column(f"'{key}'"))
            return sa.func.coalesce(sa.func.jsonb_array_length(array), 0)
        return sa.func.coalesce(sa.func.json_array_length(data, f"$.{key}"), 0)

    def _has_violation(self, violation_id: str) -> Any:
        data = t.scorecards.c.data
        if self.postgres:
            # Containment can use a GIN index on data; see the report on indexes.
            probe = sa.cast(sa.literal(json.dumps({"violations": [{"id": violation_id}]})), postgresql.JSONB)
            return data.op("@>")(probe)
        element = self._elements("violations")
        return sa.exists(sa.select(sa.literal(1)).select_from(element)
                         .where(self._text(element, "id") == violation_id))

    # -- the latest scorecard per call ---------------------------------------------------------

    def _scored(self, f: Filters) -> tuple[Any, list[Any]]:
        """FROM clause of the latest scorecards, and the conditions for the filters' calls."""
        sc = t.scorecards
        # The `latest` flag marks each call's newest version (kept by the repository when it adds one).
        conds: list[Any] = [sc.c.latest]
        # agent and date are copied from the call into every version, so filtering here is exact.
        if f.agent_id is not None:
            conds.append(sc.c.agent_id == f.agent_id)
        if f.own_agent is not None:
            conds.append(sc.c.agent_id == f.own_agent)
        if f.date_from is not None:
            conds.append(sc.c.call_date >= f.date_from)
        if f.date_to is not None:
            conds.append(sc.c.call_date <= f.date_to)
        conds.extend(member_on(sc.c.agent_id, sc.c.call_date, s) for s in f.membership_scopes())
        return sc, conds + self._card_conditions(f)

    def _card_conditions(self, f: Filters) -> list[Any]:
        sc = t.scorecards
        conds: list[Any] = []
        # Rubric, verdict and violations can change between versions: test them on the latest only.
        if f.rubric_id is not None:
            conds.append(sc.c.rubric_id == f.rubric_id)
        if f.verdict is not None:
            conds.append(sc.c.passed if f.verdict == "pass" else sa.not_(sc.c.passed))
        if f.violation is not None:
            conds.append(self._has_violation(f.violation))
        return conds

    # -- aggregates ----------------------------------------------------------------------------

    def totals(self, f: Filters) -> Totals:
        """Count, mean score, pass rate, auto-fails and violations by kind over the filtered calls."""
        if self._rolled(f):
            rows = self._rollup_sums(f, None)
            return _rollup_totals(rows[0][1:]) if rows else _totals((0, None, 0, 0, 0), None)
        joined, conds = self._scored(f)
        with self.engine.connect() as conn:
            row = conn.execute(self._totals_query(joined, conds)).one()
            kinds = conn.execute(self._kinds_query(joined, conds)).all()
        violations = dict.fromkeys(VIOLATION_KINDS, 0)
        for _agent, kind, n in kinds:
            violations[str(kind)] = violations.get(str(kind), 0) + int(n)
        return _totals(row[1:], violations)

    def agents(self, f: Filters, *, after: str | None = None, limit: int | None = None) -> list[AgentTotals]:
        """Per agent over the filtered calls: the same aggregate as `totals`, ordered by agent id (only
        the agents after `after`, at most `limit` of them, when given)."""
        if self._rolled(f):
            r = t.scorecard_rollups
            return [AgentTotals(agent_id=str(row[0]), totals=_rollup_totals(row[1:]))
                    for row in self._rollup_sums(f, r.c.agent_id, *_after(r.c.agent_id, after), limit=limit)]
        joined, conds = self._scored(f)
        sc = t.scorecards
        conds = [*conds, *_after(sc.c.agent_id, after)]
        with self.engine.connect() as conn:
            rows = conn.execute(self._totals_query(joined, conds, by_agent=True)
                                .order_by(sc.c.agent_id).limit(limit)).all()
            shown = [sc.c.agent_id.in_([row[0] for row in rows])] if limit is not None else []
            kinds = conn.execute(self._kinds_query(joined, [*conds, *shown])).all()
        by_agent: dict[str, dict[str, int]] = {}
        for agent, kind, n in kinds:
            counts = by_agent.setdefault(agent, dict.fromkeys(VIOLATION_KINDS, 0))
            counts[str(kind)] = counts.get(str(kind), 0) + int(n)
        return [AgentTotals(agent_id=row[0], totals=_totals(row[1:], by_agent.get(row[0])))
                for row in rows]

    def agents_page(self, f: Filters, cursor: str | None = None,
                    page_size: int = paging.DEFAULT_PAGE_SIZE) -> paging.Paged[AgentTotals]:
        """One page of `agents`, after the agent the cursor names."""
        page_size = paging.page_size_within(page_size)
        after = AGENTS.decode(cursor)[0] if cursor is not None else None
        return AGENTS.page(self.agents(f, after=after, limit=page_size + 1), page_size)

    def groups(self, f: Filters, by: Literal["team", "vendor"], *, after: str | None = None,
               limit: int | None = None) -> list[GroupTotals]:
        """Per team or vendor over the filtered calls, each call counted for the membership its agent was
        in on the call's date (calls of agents without one are left out), ordered by name (only the
        names after `after`, at most `limit` of them, when given)."""
        if self._rolled(f):
            r = t.scorecard_rollups
            return [GroupTotals(name=str(row[0]), totals=_rollup_totals(row[1:]))
                    for row in self._rollup_sums(f, r.c[by], r.c[by].is_not(None), *_after(r.c[by], after),
                                                 limit=limit)]
        joined, conds = self._scored(f)
        sc, m = t.scorecards, t.team_memberships
        joined = joined.join(m, sa.and_(m.c.agent_id == sc.c.agent_id, m.c.since <= sc.c.call_date,
                                        sa.or_(m.c.until.is_(None), m.c.until >= sc.c.call_date)))
        name = m.c[by]
        conds = [*conds, *_after(name, after)]
        query = sa.select(
            name, sa.func.count(), sa.func.avg(_reviewed("score")),
            sa.func.sum(sa.case((_reviewed("passed"), 1), else_=0)),
            sa.func.sum(sa.case((_reviewed("auto_fail"), 1), else_=0)),
            sa.func.sum(sa.case((sc.c.provisional, 1), else_=0)),
        ).select_from(joined).where(*conds).group_by(name).order_by(name).limit(limit)
        element = self._elements("violations")
        kind = self._text(element, "kind")
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            shown = [name.in_([row[0] for row in rows])] if limit is not None else []
            kinds = conn.execute(sa.select(name, kind, sa.func.count()).select_from(joined)
                                 .join(element, sa.true()).where(*conds, *shown).group_by(name, kind)).all()
        by_name: dict[str, dict[str, int]] = {}
        for group, k, n in kinds:
            counts = by_name.setdefault(group, dict.fromkeys(VIOLATION_KINDS, 0))
            counts[str(k)] = counts.get(str(k), 0) + int(n)
        return [GroupTotals(name=str(r[0]), totals=_totals(r[1:], by_name.get(r[0]))) for r in rows]

    def groups_page(self, f: Filters, by: Literal["team", "vendor"], cursor: str | None = None,
                    page_size: int = paging.DEFAULT_PAGE_SIZE) -> paging.Paged[GroupTotals]:
        """One page of `groups`, after the team or vendor the cursor names."""
        page_size = paging.page_size_within(page_size)
        listing = GROUPS[by]
        after = listing.decode(cursor)[0] if cursor is not None else None
        return listing.page(self.groups(f, by, after=after, limit=page_size + 1), page_size)

    # -- the rollup: sums per agent, call date and rubric (`storage.rollups`) ------------------

    def _rolled(self, f: Filters) -> bool:
        """Whether the rollup answers these filters: it does for agent, dates, rubric, team, vendor and
        scope; a verdict or violation narrowing needs each scorecard."""
        return self.use_rollups and f.verdict is None and f.violation is None

    def _rollup_conditions(self, f: Filters, r: Any = None) -> list[Any]:
        """Conditions on a rollup table's rows (`scorecard_rollups` unless another is named)."""
        r = t.scorecard_rollups if r is None else r
        conds: list[Any] = []
        for agent in (f.agent_id, f.own_agent):
            if agent is not None:
                conds.append(r.c.agent_id == agent)
        if f.date_from is not None:
            conds.append(r.c.call_date >= f.date_from)
        if f.date_to is not None:
            conds.append(r.c.call_date <= f.date_to)
        if f.rubric_id is not None:
            conds.append(r.c.rubric_id == f.rubric_id)
        # A row's team and vendor are the agent's membership on its date: a scope is a condition on them.
        for s in f.membership_scopes():
            conds.extend([r.c.team.is_not(None), *scope_conditions(r, s)])
        return conds

    def _rollup_sums(self, f: Filters, by: Any, *extra: Any, limit: int | None = None) -> list[Any]:
        """(group, calls, score sum, passed, auto-fail, provisional, prohibited, outdated) per group with
        calls (one row with group None when `by` is None), ordered by group, at most `limit` groups."""
        r = t.scorecard_rollups
        sums = [sa.func.sum(r.c[name]) for name in rollups.SUMS]
        query = sa.select(by if by is not None else sa.literal(None), *sums).where(
            *self._rollup_conditions(f), *extra)
        if by is not None:
            # A group whose rows were all taken back (erasure, review) sums to no calls: not listed.
            query = query.group_by(by).having(sa.func.sum(r.c.calls) > 0).order_by(by).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [row for row in rows if row[1]]

    def _totals_query(self, joined: Any, conds: list[Any], *, by_agent: bool = False) -> Any:
        sc = t.scorecards
        query = sa.select(
            sc.c.agent_id if by_agent else sa.literal(None),
            sa.func.count(), sa.func.avg(_reviewed("score")),
            sa.func.sum(sa.case((_reviewed("passed"), 1), else_=0)),
            sa.func.sum(sa.case((_reviewed("auto_fail"), 1), else_=0)),
            sa.func.sum(sa.case((sc.c.provisional, 1), else_=0)),
        ).select_from(joined).where(*conds)
        return query.group_by(sc.c.agent_id) if by_agent else query

    def _kinds_query(self, joined: Any, conds: list[Any]) -> Any:
        sc = t.scorecards
        element = self._elements("violations")
        kind = self._text(element, "kind")
        return (sa.select(sc.c.agent_id, kind, sa.func.count())
                .select_from(joined).join(element, sa.true()).where(*conds)
                .group_by(sc.c.agent_id, kind))

    def weekly_trend(self, f: Filters) -> list[WeekPoint]:
        """Calls, mean score and pass rate per ISO week (weeks without calls are left out)."""
        # Group by day in SQL (portable), then fold days into ISO weeks here: at most one row a day.
        query: Any
        if self._rolled(f):
            r = t.scorecard_rollups
            query = (sa.select(r.c.call_date, sa.func.sum(r.c.calls), sa.func.sum(r.c.score_sum),
                               sa.func.sum(r.c.passed))
                     .where(*self._rollup_conditions(f), r.c.calls > 0).group_by(r.c.call_date))
        else:
            sc = t.scorecards
            joined, conds = self._scored(f)
            query = (sa.select(sc.c.call_date, sa.func.count(), sa.func.sum(_reviewed("score")),
                               sa.func.sum(sa.case((_reviewed("passed"), 1), else_=0)))
                     .select_from(joined).where(*conds).group_by(sc.c.call_date))
        weeks: dict[tuple[int, int], list[float]] = {}
        with self.engine.connect() as conn:
            for day, n, total, passed in conn.execute(query):
                year, week, _ = day.isocalendar()
                acc = weeks.setdefault((year, week), [0, 0.0, 0])
                acc[0] += int(n)
                acc[1] += float(total or 0)
                acc[2] += int(passed or 0)
        return [WeekPoint(week=f"{year}-W{week:02d}", week_start=date.fromisocalendar(year, week, 1),
                          count=int(n), mean_score=round(total / n, 2), pass_rate=round(passed / n, 4))
                for (year, week), (n, total, passed) in sorted(weeks.items())]

    def criterion_rates(self, f: Filters) -> list[CriterionRate]:
        """Pass counts per rubric criterion over the filtered calls, where the criterion applied."""
        if self._rolled(f):
            return self._rolled_criterion_rates(f)
        sc = t.scorecards
        joined, conds = self._scored(f)
        element = self._elements("criteria")
        crit_id = self._text(element, "id")
        query = (sa.select(sc.c.rubric_id, crit_id, sa.func.max(self._text(element, "title")),
                           sa.func.max(self._text(element, "section")),
                           sa.func.sum(sa.case((self._true(element, "passed", default=False), 1), else_=0)),
                           sa.func.count())
                 .select_from(joined).join(element, sa.true())
                 .where(*conds, self._true(element, "applicable", default=True))
                 .group_by(sc.c.rubric_id, crit_id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        rates = [CriterionRate(rubric_id=r[0], id=str(r[1]), title=str(r[2] or r[1]), section=str(r[3] or ""),
                               passed=int(r[4] or 0), total=int(r[5])) for r in rows]
        order = self._criterion_order(f)
        return sorted(rates, key=lambda c: (c.rubric_id, order.get((c.rubric_id, c.id), 10_000), c.id))

    def _rolled_criterion_rates(self, f: Filters) -> list[CriterionRate]:
        """`criterion_rates` from the criterion rollup, in the order of the newest scorecard in scope."""
        cr, r = t.criterion_rollups, t.scorecard_rollups
        # Calls of one team or vendor (every row has one) without an agent: the team-day sums answer.
        grouped = bool(f.membership_scopes()) and f.agent_id is None and f.own_agent is None
        g = t.group_criterion_rollups if grouped else cr
        query = (sa.select(g.c.rubric_id, g.c.criterion_id, sa.func.max(g.c.title),
                           sa.func.max(g.c.section), sa.func.sum(g.c.passed), sa.func.sum(g.c.applied))
                 .where(*self._rollup_conditions(f, g)).group_by(g.c.rubric_id, g.c.criterion_id)
                 .having(sa.func.sum(g.c.applied) > 0))
        newest = (sa.select(sa.func.max(r.c.newest_seq)).where(*self._rollup_conditions(f, r))
                  .group_by(r.c.rubric_id))
        order: dict[tuple[str, str], int] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            seqs = [int(x) for x in conn.execute(newest).scalars() if x is not None]
            places = sa.select(cr.c.rubric_id, cr.c.criterion_id, cr.c.position).where(
                cr.c.newest_seq.in_(seqs))
            for rubric_id, crit_id, position in conn.execute(places) if seqs else []:
                order[(str(rubric_id), str(crit_id))] = int(position)
        rates = [CriterionRate(rubric_id=r[0], id=str(r[1]), title=str(r[2] or r[1]), section=str(r[3] or ""),
                               passed=int(r[4] or 0), total=int(r[5])) for r in rows]
        return sorted(rates, key=lambda c: (c.rubric_id, order.get((c.rubric_id, c.id), 10_000), c.id))

    def criterion_rates_by(self, f: Filters, by: Literal["team", "vendor"]) -> dict[str, list[CriterionRate]]:
        """`criterion_rates` of each team or vendor over the filtered calls (each call counted for its
        agent's membership on the call's date), in one read of the criterion rollup."""
        if not self._rolled(f):
            return {g.name: self.criterion_rates(of_group(f, by, g.name)) for g in self.groups(f, by)}
        cr, r = t.criterion_rollups, t.scorecard_rollups
        # Without an agent to narrow to, the team-day sums answer (a team's agents share its rows).
        g = t.group_criterion_rollups if f.agent_id is None and f.own_agent is None else cr
        query = (sa.select(g.c[by], g.c.rubric_id, g.c.criterion_id, sa.func.max(g.c.title),
                           sa.func.max(g.c.section), sa.func.sum(g.c.passed), sa.func.sum(g.c.applied))
                 .where(*self._rollup_conditions(f, g), g.c[by].is_not(None))
                 .group_by(g.c[by], g.c.rubric_id, g.c.criterion_id)
                 .having(sa.func.sum(g.c.applied) > 0))
        # Each group's criteria in the order of its newest scorecard per rubric, as `criterion_rates`.
        newest = (sa.select(r.c[by], sa.func.max(r.c.newest_seq)).where(*self._rollup_conditions(f, r))
                  .group_by(r.c[by], r.c.rubric_id))
        order: dict[str, dict[tuple[str, str], int]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            group_of = {int(seq): str(name) for name, seq in conn.execute(newest) if seq is not None}
            places = sa.select(cr.c.newest_seq, cr.c.rubric_id, cr.c.criterion_id, cr.c.position).where(
                cr.c.newest_seq.in_(list(group_of)))
            for seq, rubric_id, crit_id, position in conn.execute(places) if group_of else []:
                order.setdefault(group_of[int(seq)], {})[(str(rubric_id), str(crit_id))] = int(position)
        rates: dict[str, list[CriterionRate]] = {}
        for row in rows:
            rates.setdefault(str(row[0]), []).append(CriterionRate(
                rubric_id=row[1], id=str(row[2]), title=str(row[3] or row[2]), section=str(row[4] or ""),
                passed=int(row[5] or 0), total=int(row[6])))
        for name, found in rates.items():
            places_of = order.get(name, {})
            found.sort(key=lambda c: (c.rubric_id, places_of.get((c.rubric_id, c.id), 10_000), c.id))
        return rates

    def response_rates(self, f: Filters) -> list[ResponseRate]:
        """Response-time attainment per rubric, criterion and channel over the filtered calls: the
        conversations where the criterion applied, how many kept it, and the mean and longest deciding
        wait. A reviewer's override of the criterion counts in place of the automatic verdict (and,
        as in the reviewed score, makes it apply), like the reviewed pass rate."""
        sc, rv = t.scorecards, t.reviews
        joined, conds = self._scored(f)
        element = self._elements("criteria")
        crit_id = self._text(element, "id")
        measure = self._nested(element, "response", "measure")
        channel = self._nested(element, "response", "channel")
        wait = sa.cast(self._nested(element, "response", "wait_s"), sa.Float)
        newest = (sa.select(rv.c.call_id, rv.c.target_id, sa.func.max(rv.c.id).label("id"))
                  .where(rv.c.target_kind == "criterion").group_by(rv.c.call_id, rv.c.target_id).subquery())
        last = rv.alias("last_review")
        overridden = last.c.action.in_(("override_pass", "override_fail"))
        passed = sa.case((last.c.action == "override_pass", 1), (last.c.action == "override_fail", 0),
                         (self._true(element, "passed", default=False), 1), else_=0)
        counted = sa.or_(self._true(element, "applicable", default=True), overridden)
        title = sa.func.max(self._text(element, "title"))
        query = (sa.select(sc.c.rubric_id, crit_id, title, measure, channel, sa.func.count(),
                           sa.func.sum(passed), sa.func.avg(wait), sa.func.max(wait))
                 .select_from(joined).join(element, sa.true())
                 .outerjoin(newest, sa.and_(newest.c.call_id == sc.c.call_id, newest.c.target_id == crit_id))
                 .outerjoin(last, last.c.id == newest.c.id)
                 .where(*conds, measure.is_not(None), counted)
                 .group_by(sc.c.rubric_id, crit_id, measure, channel)
                 .order_by(sc.c.rubric_id, crit_id, channel))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ResponseRate(rubric_id=r[0], id=str(r[1]), title=str(r[2] or r[1]), measure=str(r[3]),
                             channel=str(r[4] or ""), conversations=int(r[5]), within=int(r[6] or 0),
                             mean_wait_s=_round(r[7], 1), longest_wait_s=_round(r[8], 1)) for r in rows]

    def overturn_rates(self, f: Filters) -> list[OverturnRate]:
        """Agents' disputes per rubric and criterion or violation id over the filters' calls (agent, call
        dates, rubric, team, vendor and the reader's scope): how many, overturned, upheld, still open."""
        d, c = t.disputes, t.calls
        query = (sa.select(d.c.rubric_id, d.c.target_kind, d.c.target_id, sa.func.count(),
                           sa.func.sum(sa.case((d.c.status == "overturned", 1), else_=0)),
                           sa.func.sum(sa.case((d.c.status == "upheld", 1), else_=0)))
                 .select_from(d.join(c, c.c.id == d.c.call_id))
                 .group_by(d.c.rubric_id, d.c.target_kind, d.c.target_id)
                 .order_by(d.c.rubric_id, d.c.target_kind, d.c.target_id))
        for agent in (f.agent_id, f.own_agent):
            if agent is not None:
                query = query.where(c.c.agent_id == agent)
        if f.date_from is not None:
            query = query.where(c.c.call_date >= f.date_from)
        if f.date_to is not None:
            query = query.where(c.c.call_date <= f.date_to)
        if f.rubric_id is not None:
            query = query.where(d.c.rubric_id == f.rubric_id)
        for s in f.membership_scopes():
            query = query.where(member_on(c.c.agent_id, c.c.call_date, s))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        rates = [OverturnRate(rubric_id=r[0], target=r[1], id=r[2], disputes=int(r[3]),
                              overturned=int(r[4] or 0), upheld=int(r[5] or 0),
                              open=int(r[3]) - int(r[4] or 0) - int(r[5] or 0)) for r in rows]
        # Most often overturned first: those are the rules to look at.
        return sorted(rates, key=lambda x: (-(x.overturn_rate or 0.0), -x.disputes, x.rubric_id, x.target,
                                            x.id))

    def _nested(self, element: Any, key: str, inner: str) -> Any:
        """The text of `element[key][inner]` (None where absent)."""
        if self.postgres:
            return element.c.value.op("->")(sa.literal_column(f"'{key}'")).op("->>")(
                sa.literal_column(f"'{inner}'"))
        return sa.func.json_extract(element.c.value, f"$.{key}.{inner}")

    def _criterion_order(self, f: Filters) -> dict[tuple[str, str], int]:
        """Rubric order of the criteria, read from one recent scorecard per rubric."""
        sc = t.scorecards
        joined, conds = self._scored(f)
        newest = (sa.select(sc.c.rubric_id, sa.func.max(sc.c.seq).label("seq"))
                  .select_from(joined).where(*conds).group_by(sc.c.rubric_id).subquery())
        query = sa.select(sc.c.rubric_id, sc.c.data).join(newest, sc.c.seq == newest.c.seq)
        order: dict[tuple[str, str], int] = {}
        with self.engine.connect() as conn:
            for rubric_id, data in conn.execute(query):
                for i, crit in enumerate((data or {}).get("criteria") or []):
                    order[(rubric_id, str(crit.get("id")))] = i
        return order

    # -- listings ------------------------------------------------------------------------------

    def _calls_query(self, f: Filters) -> Any:
        c, sc = t.calls, t.scorecards
        query = (sa.select(c.c.id, c.c.external_id, c.c.agent_id, c.c.call_date, c.c.status,
                           c.c.failure_reason, c.c.created_at, sc.c.version, sc.c.score, sc.c.passed,
                           sc.c.auto_fail, sc.c.provisional, c.c.rubric_id, c.c.rubric_version,
                           sc.c.rubric_id.label("sc_rubric"), sc.c.rubric_version.label("sc_rubric_version"),
                           sc.c.seq)
                 .select_from(c.outerjoin(sc, sa.and_(sc.c.call_id == c.c.id, sc.c.latest))))
        if f.agent_id is not None:
            query = query.where(c.c.agent_id == f.agent_id)
        if f.external_id is not None:
            query = query.where(c.c.external_id == f.external_id)
        if f.own_agent is not None:
            query = query.where(c.c.agent_id == f.own_agent)
        if f.date_from is not None:
            query = query.where(c.c.call_date >= f.date_from)
        if f.date_to is not None:
            query = query.where(c.c.call_date <= f.date_to)
        if f.status is not None:
            query = query.where(c.c.status == f.status)
        for s in f.membership_scopes():
            query = query.where(member_on(c.c.agent_id, c.c.call_date, s))
        if f.rubric_id is not None:
            query = query.where(sa.func.coalesce(sc.c.rubric_id, c.c.rubric_id) == f.rubric_id)
        if f.verdict is not None or f.violation is not None:
            query = query.where(sc.c.call_id.is_not(None))
        narrowing = Filters(verdict=f.verdict, violation=f.violation)
        return query.where(*self._card_conditions(narrowing))

    def calls(self, f: Filters, cursor: str | None = None, page_size: int = 50) -> Page:
        """One page of calls (newest call date first) with their latest scorecard's verdict, after the
        call the cursor names (from the start without one); InputError for a cursor we did not give."""
        page_size = paging.page_size_within(page_size)
        c = t.calls
        order = (c.c.call_date, c.c.created_at, c.c.id)
        query = self._calls_query(f)
        if cursor is not None:
            after = decode_cursor(cursor)
            query = query.where(sa.tuple_(*order) < sa.tuple_(
                *(sa.literal(value, col.type) for value, col in zip(after, order, strict=True))))
        # One row more than the page says whether another page follows.
        rows_q = query.order_by(*(col.desc() for col in order)).limit(page_size + 1)
        with self.engine.connect() as conn:
            rows = list(conn.execute(rows_q).mappings())
            more = len(rows) > page_size
            rows = rows[:page_size]
            # Reading inside the JSON means reading the whole scorecard: do it for this page only.
            seqs = [r["seq"] for r in rows if r["seq"] is not None]
            counts: dict[int, int] = {}
            if seqs:
                sc = t.scorecards
                counts = {int(seq): int(n) for seq, n in conn.execute(
                    sa.select(sc.c.seq, self._array_length("violations")).where(sc.c.seq.in_(seqs)))}
        items = [_call_row(r, counts.get(r["seq"]) if r["seq"] is not None else None) for r in rows]
        last = items[-1] if more and items else None
        after_last = encode_cursor(last.call_date, last.created_at, last.call_id) if last else None
        return Page(items=items, page_size=page_size, next_cursor=after_last)

    def scorecards(self, f: Filters) -> Iterator[tuple[CallRow, dict[str, Any]]]:
        """Every scored call matching the filters with its latest scorecard, newest first (for export)."""
        c, sc = t.calls, t.scorecards
        query = self._calls_query(f).add_columns(sc.c.data).where(sc.c.call_id.is_not(None))
        query = query.order_by(c.c.call_date.desc(), c.c.created_at.desc(), c.c.id.desc())
        with self.engine.connect() as conn:
            # Stream in batches rather than holding every scorecard at once.
            result = conn.execution_options(yield_per=200).execute(query).mappings()
            for row in result:
                data = dict(row["data"] or {})
                yield _call_row(row, len(data.get("violations") or [])), data

    def agent_report(self, agent_id: str, f: Filters, cursor: str | None = None,
                     page_size: int = 50) -> AgentReport:
        """The agent view: aggregate, trend and criteria over the date range and rubric; verdict and
        violation narrow only the list of calls."""
        f = dataclasses.replace(f, agent_id=agent_id)
        scope = f.scope()
        return AgentReport(agent_id=agent_id, filters=f, totals=self.totals(scope),
                           trend=self.weekly_trend(scope), criteria=self.criterion_rates(scope),
                           calls=self.calls(f, cursor, page_size), responses=self.response_rates(scope),
                           overturns=self.overturn_rates(scope))

    # -- choices for filter forms --------------------------------------------------------------

    def agent_ids(self, f: Filters | None = None) -> list[str]:
        """Every agent with at least one call (among the filters' calls)."""
        c = t.calls
        query: Any = sa.select(c.c.agent_id)
        if f is not None:
            query = self._calls_query(f).with_only_columns(c.c.agent_id)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query.distinct().order_by(c.c.agent_id))]

    def violation_ids(self, f: Filters | None = None) -> list[tuple[str, str, str]]:
        """(id, kind, title) of every violation found on the latest scorecards in scope."""
        joined, conds = self._scored((f or Filters()).scope())
        element = self._elements("violations")
        vid = self._text(element, "id")
        query = (sa.select(vid, sa.func.max(self._text(element, "kind")),
                           sa.func.max(self._text(element, "title")))
                 .select_from(joined).join(element, sa.true()).where(*conds).group_by(vid).order_by(vid))
        with self.engine.connect() as conn:
            return [(str(i), str(k or ""), str(title or i)) for i, k, title in conn.execute(query)]

    def counts(self) -> ServiceCounts:
        """Calls by status and scorecards stored, for monitoring."""
        c, sc = t.calls, t.scorecards
        with self.engine.connect() as conn:
            statuses = {str(s): int(n) for s, n in
                        conn.execute(sa.select(c.c.status, sa.func.count()).group_by(c.c.status))}
            cards, scored = conn.execute(
                sa.select(sa.func.count(), sa.func.sum(sa.case((sc.c.latest, 1), else_=0)))).one()
        return ServiceCounts(calls_by_status=statuses, scorecards=int(cards), scored_calls=int(scored or 0))


_reviewed = rollups.reviewed


def _rollup_totals(row: Any) -> Totals:
    """Totals from the rollup's sums: calls, score sum, passed, auto-fail, provisional, violations."""
    count, score_sum, passed, auto_fail, provisional, prohibited, outdated = row
    mean = float(score_sum) / int(count) if count else None
    return _totals((count, mean, passed, auto_fail, provisional),
                   {"prohibited": int(prohibited or 0), "outdated_policy": int(outdated or 0)})


def _totals(row: Any, violations: dict[str, int] | None) -> Totals:
    count, mean, passed, auto_fail, provisional = row
    count = int(count or 0)
    return Totals(
        count=count,
        mean_score=_round(mean, 2) if count else None,
        pass_rate=round(int(passed or 0) / count, 4) if count else None,
        auto_fail_count=int(auto_fail or 0),
        violations=violations if violations is not None else dict.fromkeys(VIOLATION_KINDS, 0),
        provisional_count=int(provisional or 0),
    )


def _call_row(row: Any, violation_count: int | None) -> CallRow:
    scored = row["version"] is not None
    return CallRow(
        call_id=str(row["id"]), external_id=row["external_id"], agent_id=row["agent_id"],
        call_date=row["call_date"], status=row["status"], failure_reason=row["failure_reason"],
        created_at=row["created_at"], version=int(row["version"]) if scored else None,
        score=float(row["score"]) if scored else None, passed=bool(row["passed"]) if scored else None,
        auto_fail=bool(row["auto_fail"]) if scored else None,
        provisional=bool(row["provisional"]) if scored else False,
        rubric_id=row["sc_rubric"] if scored else row["rubric_id"],
        rubric_version=row["sc_rubric_version"] if scored else row["rubric_version"],
        violation_count=violation_count,
    )

