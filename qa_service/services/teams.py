"""Teams and vendors: which team and vendor an agent was in on each day, and what a scoped key reads.

- Memberships come from a CSV file (agent_id,team,vendor,from,to; `to` empty while the agent is still
  there) or a JSON list of such records: all of them, or none when a line is bad. An agent's periods
  must not overlap; a new period that starts after an open one closes that one the day before (a move).
- A key may carry a scope (teams and/or vendors, `Scope`). A scoped key reads only the calls of agents
  who, on the call's date, were in one of its teams and with one of its vendors. Every door goes
  through this module for it: `scoped` for the listings and aggregates (the views' `Filters`),
  `in_scope` for one call (`services.calls.readable_call`: an out-of-scope call is answered as one that
  does not exist),
  `readable_agent` for one agent's pages and `visible` for lists read outside the views.
- An agent's key carries the scope `Scope(agent=...)`: through the same functions it reads only that
  agent's own calls and scorecards, whatever team the agent was in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal, TypeVar

from qa_service.errors import Forbidden, InputError, NotFound
from qa_service.services import imports
from qa_service.services.imports import ImportRefused
from qa_service.storage.repository import (
    ImportCounts,
    Membership,
    Repository,
    Scope,
    StoredCall,
    StoredKey,
)
from qa_service.storage.views import CriterionRate, Filters, Page, Totals, WeekPoint, of_group

MEMBERSHIP_COLUMNS = ("agent_id", "team", "vendor", "from", "to")
# Roles whose keys may carry a scope: those that read scorecards by team. An admin reads everything, and
# a telephony key reads only the calls it sent.
SCOPED_ROLES = ("supervisor", "qa")
# An agent's key is bound to one agent id and reads that agent's own calls only (its scope's `agent`).
AGENT_ROLE = "agent"
T = TypeVar("T")


# -- scopes ----------------------------------------------------------------------------------------

def make_scope(role: str, teams: Iterable[str] = (), vendors: Iterable[str] = (),
               agent: str | None = None) -> Scope | None:
    """The scope of a new key from the teams and vendors named (None when none is), or an agent key's
    agent; InputError for a role that cannot be scoped, an agent key without its agent, or a bad name."""
    teams = tuple(dict.fromkeys(t.strip() for t in teams))
    vendors = tuple(dict.fromkeys(v.strip() for v in vendors))
    agent = agent.strip() if agent is not None else None
    if role == AGENT_ROLE or agent is not None:
        if role != AGENT_ROLE:
            raise InputError(f"only agent keys are bound to an agent; a {role} key reads by its role")
        if teams or vendors:
            raise InputError("an agent key reads its own agent's calls: it takes no teams or vendors")
        if not agent:
            raise InputError("an agent key needs the agent id whose scorecards it reads (--agent AGENT_ID)")
        agent_problems: list[str] = []
        imports.text_field(agent, "agent id", agent_problems)
        if agent_problems:
            raise InputError("; ".join(agent_problems))
        return Scope(agent=agent)
    if not teams and not vendors:
        return None
    if role not in SCOPED_ROLES:
        raise InputError(f"{role} keys cannot be scoped to teams or vendors; scope a "
                         f"{' or '.join(SCOPED_ROLES)} key")
    problems: list[str] = []
    for name in (*teams, *vendors):
        imports.text_field(name, "team or vendor", problems)
    if problems:
        raise InputError("; ".join(problems))
    return Scope(teams=teams, vendors=vendors)


def scoped(key: StoredKey, f: Filters) -> Filters:
    """The filters narrowed to what the key may read (its scope; unscoped keys read every call)."""
    return dataclasses.replace(f, allowed=key.scope)


class Reach:
    """What a scoped key reaches, read once per request: the memberships inside its scope."""

    def __init__(self, store: Repository, scope: Scope | None):
        self.scope = scope
        self._periods: dict[str, list[Membership]] = {}
        if scope is not None and scope.by_membership:
            for m in store.teams.memberships(scope=scope):
                self._periods.setdefault(m.agent_id, []).append(m)

    def call(self, agent_id: str, day: date) -> bool:
        """Whether a call of this agent on this day is inside the scope."""
        if self.scope is not None and self.scope.agent is not None:
            return agent_id == self.scope.agent
        return self.scope is None or any(m.on(day) for m in self._periods.get(agent_id, ()))

    def agent(self, agent_id: str) -> bool:
        """Whether the agent was inside the scope on any day (for what has no call date: an agent's page,
        certifications, training)."""
        if self.scope is not None and self.scope.agent is not None:
            return agent_id == self.scope.agent
        return self.scope is None or agent_id in self._periods


def reach(store: Repository, key: StoredKey) -> Reach:
    """What the key reaches."""
    return Reach(store, key.scope)


def visible(store: Repository, key: StoredKey, items: Iterable[T], agent: Callable[[T], str],
            day: Callable[[T], date] | None = None) -> list[T]:
    """The items the key may read: by agent and call date, or by agent alone when `day` is None."""
    if key.scope is None:
        return list(items)
    r = reach(store, key)
    if day is None:
        return [i for i in items if r.agent(agent(i))]
    return [i for i in items if r.call(agent(i), day(i))]


def in_scope(store: Repository, key: StoredKey, call: StoredCall) -> bool:
    """Whether the call is inside the key's scope (always, for an unscoped key)."""
    if key.scope is None:
        return True
    if key.scope.agent is not None:
        return call.agent_id == key.scope.agent
    return any(m.on(call.call_date) for m in store.teams.memberships(agent_id=call.agent_id, scope=key.scope))


def unscoped_only(key: StoredKey, what: str) -> None:
    """Forbidden for a scoped key: `what` covers every team's calls at once (a rescore run's impact)."""
    if key.scope is not None:
        raise Forbidden(f"{what} covers every team's calls; a key scoped to teams or vendors cannot read it")


def readable_agent(store: Repository, key: StoredKey, agent_id: str) -> None:
    """NotFound when the key is scoped and the agent was never inside its scope; Forbidden when an agent's
    key asks for another agent (whether that agent exists or not)."""
    if key.scope is not None and key.scope.agent is not None:
        if agent_id != key.scope.agent:
            raise Forbidden("an agent key reads its own scorecards only")
        return
    if key.scope is not None and not reach(store, key).agent(agent_id):
        raise NotFound(f"no agent {agent_id!r} in your teams")


# -- memberships -----------------------------------------------------------------------------------

def membership_from(fields: dict[str, str]) -> tuple[Membership | None, list[str]]:
    """A membership from text fields (agent_id, team, vendor, from, to), or the problems."""
    problems: list[str] = []
    agent = imports.text_field(fields.get("agent_id") or "", "agent_id", problems)
    team = imports.text_field(fields.get("team") or "", "team", problems)
    vendor = imports.text_field(fields.get("vendor") or "", "vendor", problems)
    since = imports.day_field(fields.get("from") or "", "from", problems)
    until = imports.day_field(fields["to"], "to", problems) if (fields.get("to") or "").strip() else None
    if since and until and since > until:
        problems.append(f"to ({until}) is before from ({since})")
    if problems or since is None:
        return None, problems
    return Membership(agent_id=agent, team=team, vendor=vendor, since=since, until=until), []


def read_memberships(text: str) -> list[Membership]:
    """Every membership of a CSV file (agent_id,team,vendor,from,to); ImportRefused naming each bad line."""
    what = "teams file"
    rows, problems = imports.csv_rows(text, MEMBERSHIP_COLUMNS, what)
    items = imports.parsed(rows, membership_from, problems)
    problems.extend(_overlaps(items))
    imports.refuse(what, problems)
    return [m for _, m in items]


def check_items(rows: Sequence[dict[str, str]]) -> list[Membership]:
    """Memberships from a JSON request's records; ImportRefused naming each bad item (1-based)."""
    numbered, problems = imports.json_rows(rows, MEMBERSHIP_COLUMNS)
    items = imports.parsed(numbered, membership_from, problems)
    problems.extend(_overlaps(items))
    imports.refuse("memberships", problems, unit="item")
    return [m for _, m in items]


def _overlaps(items: Sequence[tuple[int, Membership]]) -> list[tuple[int, str]]:
    """Problems of periods of one agent in the same file that overlap."""
    problems: list[tuple[int, str]] = []
    by_agent: dict[str, list[tuple[int, Membership]]] = {}
    for n, m in items:
        by_agent.setdefault(m.agent_id, []).append((n, m))
    for periods in by_agent.values():
        periods.sort(key=lambda p: p[1].since)
        for (n1, a), (n2, b) in zip(periods, periods[1:], strict=False):
            if a.since == b.since:
                problems.append((n2, f"agent {b.agent_id!r} starts twice on {b.since} (also at {n1})"))
            elif a.until is not None and a.until >= b.since:
                problems.append((n2, f"agent {b.agent_id!r} is in two teams on {b.since}: this period "
                                     f"overlaps the one at {n1} (it ends {a.until})"))
    return problems


def put_memberships(*, store: Repository, items: Sequence[Membership]) -> ImportCounts:
    """Store checked memberships, all or none. A new period that starts after an agent's open one closes
    it the day before (the agent moved); one that overlaps a stored closed period is refused."""
    changes: dict[tuple[str, date], Membership] = {}
    problems: list[tuple[int, str]] = []
    new = {(m.agent_id, m.since) for m in items}
    for n, item in enumerate(items, start=1):
        changes[(item.agent_id, item.since)] = item
        for stored in store.teams.memberships(agent_id=item.agent_id):
            if (stored.agent_id, stored.since) in new:
                continue  # replaced by this import
            if stored.since < item.since and stored.until is None:
                changes[(stored.agent_id, stored.since)] = dataclasses.replace(
                    stored, until=item.since - timedelta(days=1))
            elif _overlap(stored, item):
                problems.append((n, f"agent {item.agent_id!r} from {item.since} overlaps the stored period "
                                    f"in {stored.team} from {stored.since}"
                                    f"{f' to {stored.until}' if stored.until else ''}"))
    if problems:
        raise ImportRefused("memberships", problems, unit="item")
    return store.teams.put_memberships(list(changes.values()))


def _overlap(a: Membership, b: Membership) -> bool:
    end_a, end_b = a.until or date.max, b.until or date.max
    return a.since <= end_b and b.since <= end_a


# -- teams and vendors side by side ----------------------------------------------------------------

Group = Literal["team", "vendor"]


@dataclass(frozen=True)
class GroupReport:
    """One team's or vendor's aggregate, weekly trend, criteria and a page of calls."""

    by: Group
    name: str
    filters: Filters
    totals: Totals
    trend: list[WeekPoint]
    criteria: list[CriterionRate]
    calls: Page


@dataclass(frozen=True)
class Column:
    """One vendor (or team) in a comparison: its totals and pass rate per criterion id."""

    name: str
    totals: Totals
    criteria: dict[tuple[str, str], CriterionRate]


@dataclass(frozen=True)
class Comparison:
    """Teams or vendors side by side over the same calls: their columns and the criteria rows."""

    by: Group
    columns: list[Column]
    criteria: list[tuple[str, str, str]]  # (rubric id, criterion id, title) in rubric order


def readable_group(key: StoredKey, by: Group, name: str) -> None:
    """NotFound when the key's scope names teams (vendors) and not this one."""
    scope = key.scope
    named = () if scope is None else scope.teams if by == "team" else scope.vendors
    if named and name not in named:
        raise NotFound(f"no {by} {name!r} in your scope")


def group_report(*, store: Repository, key: StoredKey, by: Group, name: str, f: Filters,
                 cursor: str | None = None, page_size: int = 50) -> GroupReport:
    """A team's or vendor's report over the calls the key may read: aggregate, trend and criteria over
    the date range and rubric; verdict and violation narrow only the list of calls."""
    readable_group(key, by, name)
    f = scoped(key, of_group(f, by, name))
    views, whole = store.views, f.scope()
    return GroupReport(by=by, name=name, filters=f, totals=views.totals(whole),
                       trend=views.weekly_trend(whole), criteria=views.criterion_rates(whole),
                       calls=views.calls(f, cursor, page_size))


def compare(*, store: Repository, key: StoredKey, by: Group, f: Filters) -> Comparison:
    """Every team or vendor with calls in range side by side: totals and pass rate per criterion."""
    f = scoped(key, f.scope())
    views = store.views
    columns = []
    rows: dict[tuple[str, str], str] = {}
    rates_by = views.criterion_rates_by(f, by)
    for group in views.groups(f, by):
        rates = rates_by.get(group.name, [])
        for r in rates:
            rows.setdefault((r.rubric_id, r.id), r.title)
        columns.append(Column(name=group.name, totals=group.totals,
                              criteria={(r.rubric_id, r.id): r for r in rates}))
    return Comparison(by=by, columns=columns, criteria=[(r, c, title) for (r, c), title in rows.items()])
