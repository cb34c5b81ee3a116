"""Agents' teams and vendors by date in the SQL database.

A put is one transaction: a file with one bad line was refused before it got here. The read-side
views resolve a call's team and vendor against these rows by the call's date (`storage.views`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from qa_service.storage import paging, rollups
from qa_service.storage import tables as t
from qa_service.storage.db import utc_now, writing
from qa_service.storage.listings import MEMBERSHIPS
from qa_service.storage.paging import Paged
from qa_service.storage.repository import ImportCounts, Membership, Scope


class SqlTeams:
    """`TeamStore` over the SQL database."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def put_memberships(self, items: Sequence[Membership]) -> ImportCounts:
        """Store memberships in one transaction (one row per agent and start date; a changed row replaces
        the stored one)."""
        m = t.team_memberships
        added = updated = unchanged = 0
        now = utc_now()
        with writing(self._engine) as conn:
            for item in items:
                row = conn.execute(sa.select(m.c.id, m.c.team, m.c.vendor, m.c.until).where(
                    m.c.agent_id == item.agent_id, m.c.since == item.since)).first()
                if row is None:
                    conn.execute(m.insert().values(
                        agent_id=item.agent_id, team=item.team, vendor=item.vendor, since=item.since,
                        until=item.until, created_at=now, updated_at=now))
                    added += 1
                elif (row[1], row[2], row[3]) == (item.team, item.vendor, item.until):
                    unchanged += 1
                else:
                    conn.execute(m.update().where(m.c.id == row[0]).values(
                        team=item.team, vendor=item.vendor, until=item.until, updated_at=now))
                    updated += 1
            rollups.reassign_teams(conn, {item.agent_id for item in items})
        return ImportCounts(added=added, updated=updated, unchanged=unchanged)

    def memberships(self, agent_id: str | None = None, scope: Scope | None = None) -> list[Membership]:
        """Memberships (one agent's, those inside a scope), by agent and start date."""
        m = t.team_memberships
        query = _memberships(agent_id, scope).order_by(m.c.agent_id, m.c.since)
        with self._engine.connect() as conn:
            return [_membership(r) for r in conn.execute(query).mappings()]

    def membership_page(self, agent_id: str | None = None, scope: Scope | None = None,
                        cursor: str | None = None,
                        page_size: int = paging.DEFAULT_PAGE_SIZE) -> Paged[Membership]:
        """One page of memberships (one agent's, those inside a scope), by agent and start date, after the
        one the cursor names."""
        m = t.team_memberships
        with self._engine.connect() as conn:
            return MEMBERSHIPS.read(conn, _memberships(agent_id, scope), (m.c.agent_id, m.c.since), cursor,
                                    page_size, _membership)

    def teams_and_vendors(self) -> tuple[list[str], list[str]]:
        """Every team and every vendor named by a membership, sorted."""
        m = t.team_memberships
        with self._engine.connect() as conn:
            teams = [str(r[0]) for r in conn.execute(sa.select(m.c.team).distinct().order_by(m.c.team))]
            vendors = [str(r[0]) for r in conn.execute(sa.select(m.c.vendor).distinct().order_by(m.c.vendor))]
        return teams, vendors


def _memberships(agent_id: str | None, scope: Scope | None) -> sa.Select:
    m = t.team_memberships
    conds: list[Any] = []
    if agent_id is not None:
        conds.append(m.c.agent_id == agent_id)
    if scope is not None:
        conds.extend(scope_conditions(m, scope))
    return sa.select(m).where(*conds)


def _membership(row: Any) -> Membership:
    return Membership(agent_id=row["agent_id"], team=row["team"], vendor=row["vendor"], since=row["since"],
                      until=row["until"])


def scope_conditions(m: Any, scope: Scope) -> list[Any]:
    """SQL conditions on a membership table (or alias) for the rows inside a scope."""
    conds: list[Any] = []
    if scope.agent is not None:
        conds.append(m.c.agent_id == scope.agent)
    if scope.teams:
        conds.append(m.c.team.in_(scope.teams))
    if scope.vendors:
        conds.append(m.c.vendor.in_(scope.vendors))
    return conds


def member_on(agent: Any, day: Any, scope: Scope) -> Any:
    """SQL condition: the agent (a column) was, on the day (a column), in a membership inside the scope."""
    m = t.team_memberships.alias("scope_m")
    return sa.exists(sa.select(sa.literal(1)).select_from(m).where(
        m.c.agent_id == agent, m.c.since <= day, sa.or_(m.c.until.is_(None), m.c.until >= day),
        *scope_conditions(m, scope)))


def reached(agent: Any, scope: Scope) -> Any:
    """SQL condition: the agent (a column) is the scope's agent, or was in a membership inside the scope on
    some day (for what has no call date: certifications, training; `services.teams.Reach.agent`)."""
    if scope.agent is not None:
        return agent == scope.agent
    m = t.team_memberships.alias("reach_m")
    return agent.in_(sa.select(m.c.agent_id).where(*scope_conditions(m, scope)))
