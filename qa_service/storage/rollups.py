"""The aggregates' summary table, kept right by every write that changes what the aggregates read.

`scorecard_rollups` holds, per agent, call date and rubric, the count, reviewed score sum, passes,
auto-fails, provisional verdicts and violations by kind of the latest scorecards, plus the agent's
team and vendor on that date; `criterion_rollups` holds, per criterion of each such row, how often it
applied and passed, its title and section, and its place in the newest scorecard listing it;
`group_criterion_rollups` sums those per team, vendor, call date, rubric and criterion, for the team and
vendor comparisons. The agent, team and vendor views add these rows up instead of reading every
scorecard (`storage.views`); a day's row answers any date range, rubric and scope, because a key's
scope and a team or vendor filter are conditions on the row's agent, team and vendor.

How it stays right: each write that adds, changes or deletes scorecards wraps its statements in
`kept(conn, call_ids)`, which notes the rows the calls' latest scorecards count in before the write and
after it, and recounts those rows from the scorecards in the same transaction. Recounting (rather
than adding deltas) makes every write path the same code and a rollup row always equal to its
scorecards. On PostgreSQL the rows are locked before they are recounted, so two writers of one agent's
day queue up and the second recounts what the first committed; SQLite has one writer at a time.
Memberships changing moves rows between teams (`reassign_teams`). The team-day rows are recounted
from the agent rows after those (`refresh_groups`), under a lock per team day on PostgreSQL taken after
every agent row's: two writers of different agents of one team's day queue up there.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from qa_service.storage import tables as t

Key = tuple[str, date, str]  # agent id, call date, rubric id
_CHUNK = 300
SUMS = ("calls", "score_sum", "passed", "auto_fail", "provisional", "prohibited", "outdated_policy")
Periods = list[tuple[date, date | None, str, str]]  # an agent's memberships: since, until, team, vendor


def violation_elements(postgres: bool) -> Any:
    """A table-valued function yielding each violation that counts on the scorecard row in scope: the
    reviewed violations where a reviewer changed them, else the automatic ones."""
    sc = t.scorecards
    if postgres:
        automatic = sc.c.data.op("->")(sa.literal_column("'violations'"))
        array = sa.func.coalesce(sc.c.reviewed_violations, automatic)
        return sa.func.jsonb_array_elements(array).table_valued("value", joins_implicitly=True)
    array = sa.func.coalesce(sc.c.reviewed_violations, sa.func.json_extract(sc.c.data, "$.violations"))
    return sa.func.json_each(array).table_valued("value", joins_implicitly=True)


def element_text(element: Any, key: str, postgres: bool) -> Any:
    """The text of `element[key]`."""
    if postgres:
        return element.c.value.op("->>")(sa.literal_column(f"'{key}'"))
    return sa.func.json_extract(element.c.value, f"$.{key}")


def reviewed(column: str) -> Any:
    """A scorecard's score, pass or auto-fail after review where a reviewer changed it, else as scored."""
    sc = t.scorecards
    return sa.func.coalesce(sc.c[f"reviewed_{column}"], sc.c[column])


@contextmanager
def kept(conn: Any, call_ids: Sequence[str]) -> Iterator[None]:
    """Keep the rollup right across the writes in the block to these calls' scorecards (same transaction)."""
    ids = list(dict.fromkeys(call_ids))
    before = keys_of(conn, ids)
    yield
    refresh(conn, before | keys_of(conn, ids))


def keys_of(conn: Any, call_ids: Sequence[str]) -> set[Key]:
    """The rollup rows that these calls' latest scorecards count in."""
    sc = t.scorecards
    found: set[Key] = set()
    for k in range(0, len(call_ids), 500):
        query = (sa.select(sc.c.agent_id, sc.c.call_date, sc.c.rubric_id)
                 .where(sc.c.call_id.in_(call_ids[k:k + 500]), sc.c.latest))
        found.update((str(a), d, str(r)) for a, d, r in conn.execute(query))
    return found


def refresh(conn: Any, keys: Iterable[Key]) -> None:
    """Recount these rollup rows from the latest scorecards (deleting those that count none)."""
    ordered = sorted(set(keys))  # one lock order for every writer: no deadlock between two of them
    groups: set[GroupKey] = set()
    for k in range(0, len(ordered), _CHUNK):
        chunk = ordered[k:k + _CHUNK]
        _lock(conn, chunk)
        groups |= _groups_of(conn, chunk)  # the team days these rows counted in before the write
        counts = _count(conn, chunk)
        teams = _memberships(conn, {a for a, _, _ in chunk})
        r = t.scorecard_rollups
        gone = [key for key in chunk if key not in counts]
        for g in range(0, len(gone), 100):
            conn.execute(r.delete().where(sa.tuple_(r.c.agent_id, r.c.call_date, r.c.rubric_id)
                                          .in_(gone[g:g + 100])))
        rows = [{"k_agent": a, "k_date": d, "k_rubric": rub, **counts[(a, d, rub)],
                 **_team_on(teams.get(a, []), d)} for a, d, rub in chunk if (a, d, rub) in counts]
        if rows:
            conn.execute(r.update().where(r.c.agent_id == sa.bindparam("k_agent"),
                                          r.c.call_date == sa.bindparam("k_date"),
                                          r.c.rubric_id == sa.bindparam("k_rubric")), rows)
        _refresh_criteria(conn, chunk, teams)
        groups |= _groups_of(conn, chunk)  # and after it
    # Every agent row is locked before any team day: writers take the two kinds of lock in one order.
    refresh_groups(conn, groups)


def _refresh_criteria(conn: Any, chunk: list[Key], teams: dict[str, Periods]) -> None:
    """Recount the criterion rows of these rollup rows (whose locks the caller holds) from the latest
    scorecards' criteria: applied and passed as the criterion view counts them, the greatest title and
    section where it applied, and its place in the newest scorecard listing it."""
    sc, cr = t.scorecards, t.criterion_rollups
    key = sa.tuple_(cr.c.agent_id, cr.c.call_date, cr.c.rubric_id)
    for g in range(0, len(chunk), 100):
        conn.execute(cr.delete().where(key.in_(chunk[g:g + 100])))
    query = (sa.select(sc.c.seq, sc.c.agent_id, sc.c.call_date, sc.c.rubric_id, sc.c.data["criteria"])
             .where(sc.c.latest, sa.tuple_(sc.c.agent_id, sc.c.call_date, sc.c.rubric_id).in_(chunk)))
    _insert_criteria(conn, _criterion_rows(conn.execute(query)), teams)


CriterionKey = tuple[str, date, str, str]  # agent id, call date, rubric id, criterion id


def _criterion_rows(cards: Iterable[Any]) -> dict[CriterionKey, dict[str, Any]]:
    """The criterion rows of these latest scorecards, given as (seq, agent, date, rubric, criteria)."""
    found: dict[CriterionKey, dict[str, Any]] = {}
    for seq, agent, day, rubric, criteria in cards:
        for position, crit in enumerate(criteria if isinstance(criteria, list) else []):
            if not isinstance(crit, dict) or crit.get("id") is None:
                continue
            row = found.setdefault((str(agent), day, str(rubric), str(crit["id"])), {
                "applied": 0, "passed": 0, "title": None, "section": None, "newest_seq": -1, "position": 0})
            # Applies unless it says otherwise (a missing or null `applicable`, as the SQL views read it).
            if crit.get("applicable", True) in (True, None):
                row["applied"] += 1
                row["passed"] += crit.get("passed") is True
                row["title"] = _greater(row["title"], crit.get("title"))
                row["section"] = _greater(row["section"], crit.get("section"))
            if seq > row["newest_seq"]:
                row["newest_seq"], row["position"] = int(seq), position
    return found


def _insert_criteria(conn: Any, found: dict[CriterionKey, dict[str, Any]], teams: dict[str, Periods]) -> None:
    rows = [{"agent_id": a, "call_date": d, "rubric_id": rub, "criterion_id": cid, **values,
             **_team_on(teams.get(a, []), d)} for (a, d, rub, cid), values in found.items()]
    for g in range(0, len(rows), 1000):
        conn.execute(t.criterion_rollups.insert(), rows[g:g + 1000])


def _greater(a: Any, b: Any) -> str | None:
    """The greater of two texts, as SQL's MAX reads them (None where absent)."""
    texts = [str(x) for x in (a, b) if x is not None]
    return max(texts) if texts else None


def _lock(conn: Any, chunk: list[Key]) -> None:
    """Make sure each row exists, and lock it until the transaction ends (PostgreSQL)."""
    r = t.scorecard_rollups
    postgres = conn.dialect.name == "postgresql"
    insert: Any = postgresql.insert(r) if postgres else sqlite.insert(r)
    conn.execute(insert.on_conflict_do_nothing(),
                 [{"agent_id": a, "call_date": d, "rubric_id": rub} for a, d, rub in chunk])
    if postgres:
        key = sa.tuple_(r.c.agent_id, r.c.call_date, r.c.rubric_id)
        conn.execute(sa.select(r.c.agent_id).where(key.in_(chunk))
                     .order_by(r.c.agent_id, r.c.call_date, r.c.rubric_id).with_for_update())


def _sums(postgres: bool) -> Any:
    """SELECT of the rollup's key and sums, grouped by key, over the latest scorecards."""
    sc = t.scorecards
    key_cols = (sc.c.agent_id, sc.c.call_date, sc.c.rubric_id)

    def violations_of(kind: str) -> Any:
        element = violation_elements(postgres)
        return (sa.select(sa.func.count()).select_from(element)
                .where(element_text(element, "kind", postgres) == kind).scalar_subquery())

    return sa.select(
        *key_cols, sa.func.count(), sa.func.sum(reviewed("score")),
        sa.func.sum(sa.case((reviewed("passed"), 1), else_=0)),
        sa.func.sum(sa.case((reviewed("auto_fail"), 1), else_=0)),
        sa.func.sum(sa.case((sc.c.provisional, 1), else_=0)),
        sa.func.sum(violations_of("prohibited")), sa.func.sum(violations_of("outdated_policy")),
        sa.func.max(sc.c.seq),
    ).where(sc.c.latest).group_by(*key_cols)


def _count(conn: Any, chunk: list[Key]) -> dict[Key, dict[str, Any]]:
    """The sums of each row from the latest scorecards it covers (rows covering none are left out)."""
    sc = t.scorecards
    query = _sums(conn.dialect.name == "postgresql").where(
        sa.tuple_(sc.c.agent_id, sc.c.call_date, sc.c.rubric_id).in_(chunk))
    found: dict[Key, dict[str, Any]] = {}
    for a, d, rub, n, score, passed, auto_fail, provisional, prohibited, outdated, newest in \
            conn.execute(query):
        found[(str(a), d, str(rub))] = {
            "calls": int(n), "score_sum": float(score or 0.0), "passed": int(passed or 0),
            "auto_fail": int(auto_fail or 0), "provisional": int(provisional or 0),
            "prohibited": int(prohibited or 0), "outdated_policy": int(outdated or 0),
            "newest_seq": int(newest)}
    return found


def _memberships(conn: Any, agents: set[str]) -> dict[str, Periods]:
    m = t.team_memberships
    found: dict[str, Periods] = {}
    query = sa.select(m.c.agent_id, m.c.since, m.c.until, m.c.team, m.c.vendor).where(
        m.c.agent_id.in_(sorted(agents)))
    for agent, since, until, team, vendor in conn.execute(query):
        found.setdefault(str(agent), []).append((since, until, str(team), str(vendor)))
    return found


def _team_on(periods: Periods, day: date) -> dict[str, str | None]:
    """The team and vendor of the membership in force on the day (periods of an agent do not overlap)."""
    for since, until, team, vendor in periods:
        if since <= day and (until is None or day <= until):
            return {"team": team, "vendor": vendor}
    return {"team": None, "vendor": None}


def reassign_teams(conn: Any, agent_ids: Iterable[str]) -> None:
    """Set the team and vendor of these agents' rollup rows from their memberships (same transaction as
    the change of memberships), and recount the team days they leave and join."""
    agents = sorted(set(agent_ids))
    before = _agent_groups(conn, agents)
    _set_teams(conn, agents)
    refresh_groups(conn, before | _agent_groups(conn, agents))


def _set_teams(conn: Any, agents: list[str]) -> None:
    """Each of these agents' rows gets the team and vendor of the membership of its date: cleared, then
    set by one join with the membership of each row's date."""
    m = t.team_memberships
    for r in (t.scorecard_rollups, t.criterion_rollups):
        for k in range(0, len(agents), 500):
            some = r.c.agent_id.in_(agents[k:k + 500])
            conn.execute(r.update().where(some).values(team=None, vendor=None))
            on_the_day = (m.c.agent_id == r.c.agent_id, m.c.since <= r.c.call_date,
                          sa.or_(m.c.until.is_(None), m.c.until >= r.c.call_date))
            conn.execute(r.update().where(some, *on_the_day).values(team=m.c.team, vendor=m.c.vendor))


# -- the criterion rollup per team day (`group_criterion_rollups`) ---------------------------------

GroupKey = tuple[str, str, date, str]  # team, vendor, call date, rubric id


def _groups_of(conn: Any, chunk: list[Key]) -> set[GroupKey]:
    """The team days these rollup rows count in now."""
    r = t.scorecard_rollups
    key = sa.tuple_(r.c.agent_id, r.c.call_date, r.c.rubric_id)
    query = sa.select(r.c.team, r.c.vendor, r.c.call_date, r.c.rubric_id).where(
        key.in_(chunk), r.c.team.is_not(None))
    return {(str(team), str(vendor), d, str(rub)) for team, vendor, d, rub in conn.execute(query)}


def _agent_groups(conn: Any, agents: list[str]) -> set[GroupKey]:
    """The team days these agents' rollup rows count in now."""
    r = t.scorecard_rollups
    found: set[GroupKey] = set()
    for k in range(0, len(agents), 500):
        query = (sa.select(r.c.team, r.c.vendor, r.c.call_date, r.c.rubric_id).distinct()
                 .where(r.c.agent_id.in_(agents[k:k + 500]), r.c.team.is_not(None)))
        found.update((str(team), str(vendor), d, str(rub)) for team, vendor, d, rub in conn.execute(query))
    return found


def _group_sums() -> Any:
    """SELECT of the team-day criterion rows summed from the per-agent criterion rows."""
    cr = t.criterion_rollups
    key_cols = (cr.c.team, cr.c.vendor, cr.c.call_date, cr.c.rubric_id, cr.c.criterion_id)
    return (sa.select(*key_cols, sa.func.sum(cr.c.applied), sa.func.sum(cr.c.passed), sa.func.max(cr.c.title),
                      sa.func.max(cr.c.section))
            .where(cr.c.team.is_not(None), cr.c.vendor.is_not(None)).group_by(*key_cols))


GROUP_COLUMNS = ["team", "vendor", "call_date", "rubric_id", "criterion_id", "applied", "passed", "title",
                 "section"]


def refresh_groups(conn: Any, keys: Iterable[GroupKey]) -> None:
    """Recount these team days' criterion rows from the per-agent criterion rows (whose writers hold
    their locks). On PostgreSQL each team day is locked first, in one order, so that two writers of
    one team's day (two agents of the team) recount one after the other."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    if conn.dialect.name == "postgresql":
        lock = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
        for team, vendor, d, rub in ordered:
            conn.execute(lock, {"key": f"group-criteria\x1f{team}\x1f{vendor}\x1f{d.isoformat()}\x1f{rub}"})
    g, cr = t.group_criterion_rollups, t.criterion_rollups
    for k in range(0, len(ordered), 100):
        chunk = ordered[k:k + 100]
        conn.execute(g.delete().where(_team_day(g).in_(chunk)))
        conn.execute(g.insert().from_select(GROUP_COLUMNS, _group_sums().where(_team_day(cr).in_(chunk))))


def _team_day(table: sa.Table) -> Any:
    return sa.tuple_(table.c.team, table.c.vendor, table.c.call_date, table.c.rubric_id)


def rebuild_groups(conn: Any) -> None:
    """Recount every team day's criterion rows from the per-agent criterion rows (a migration; a repair)."""
    conn.execute(t.group_criterion_rollups.delete())
    conn.execute(t.group_criterion_rollups.insert().from_select(GROUP_COLUMNS, _group_sums()))


def rebuild(conn: Any) -> None:
    """Recount the whole rollup from the scorecards (the migration that adds it; a repair): the sums in
    one statement, then the criteria, then every row's team and vendor."""
    r = t.scorecard_rollups
    conn.execute(t.criterion_rollups.delete())
    conn.execute(r.delete())
    columns = ["agent_id", "call_date", "rubric_id", *SUMS, "newest_seq"]
    conn.execute(r.insert().from_select(columns, _sums(conn.dialect.name == "postgresql")))
    # One pass over the latest scorecards in key order, a key's criterion rows written once it is read.
    sc = t.scorecards
    query = (sa.select(sc.c.seq, sc.c.agent_id, sc.c.call_date, sc.c.rubric_id, sc.c.data["criteria"])
             .where(sc.c.latest).order_by(sc.c.agent_id, sc.c.call_date, sc.c.rubric_id))
    cards = conn.execute(query, execution_options={"yield_per": 2000})
    batch: dict[CriterionKey, dict[str, Any]] = {}
    for _key, group in itertools.groupby(cards, key=lambda row: (row[1], row[2], row[3])):
        batch.update(_criterion_rows(group))
        if len(batch) >= 5000:
            _insert_criteria(conn, batch, {})
            batch = {}
    _insert_criteria(conn, batch, {})
    agents = conn.execute(sa.select(r.c.agent_id).distinct()).scalars().all()
    _set_teams(conn, sorted(str(a) for a in agents))
