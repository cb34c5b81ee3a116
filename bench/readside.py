"""The read side at scale: agent, team and vendor aggregates and a deep list page over 1,000,000
scorecards on PostgreSQL.

1. Makes a database of its own and migrates it, then loads calls, scorecards (3% rescored: two
   versions), team memberships (a tenth of the agents change team mid-year) and the rollup rows with
   COPY, not through the pipeline: 200 agents in 20 teams and 4 vendors, two rubrics, one year of call
   dates, 2% of the verdicts changed by a reviewer. The rollup rows are summed here from the same
   rows, and checked against the scorecards for a sample of agents before anything is timed.
2. Times, median of --repeat runs after one untimed run: the agent list, the team and vendor
   comparisons (whole year, one month, a key scoped to two teams), one agent's aggregate and weekly
   trend, and a list page (50 calls) half a million calls deep by cursor, over all calls, one agent's
   and one team's.
   Criterion pass rates too: one agent's and one team's year, one team's month, everyone's year.
3. Times `rollups.rebuild` (what the migration runs on an existing database) and checks it gives
   the rows the load summed.
4. With --before, the same aggregates computed from the scorecards themselves (`use_rollups=False`,
   as every view read them before the rollup) and the deep page read by OFFSET with a total count.

    python bench/readside.py                      # 1,000,000 calls
    python bench/readside.py --calls 100000 --before

`run(args) -> dict` is what bench/run.py calls (`--only readside`); figures are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
for extra in (REPO_ROOT, REPO_ROOT / "bench"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from load import time_it  # noqa: E402  (bench/ is on the path from here on)

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_MS = 150.0
NO_ROUTE = frozenset({"criteria_everyone_year"})
AGENTS, TEAMS, VENDORS = 200, 20, 4
FIRST_DAY = date(2025, 12, 1)
DAYS = 365
RUBRICS = (("voice-intake", 0.8), ("chat-intake", 0.2))
KINDS = ("prohibited", "outdated_policy")

Key = tuple[str, date, str]


def agent_name(i: int) -> str:
    return f"agent-{i:03d}"


def memberships(rng: random.Random) -> list[dict[str, Any]]:
    """Each agent in one team and vendor; a tenth move to another team on 1 June."""
    rows = []
    now = datetime.now(UTC)
    move = date(2026, 6, 1)
    for i in range(AGENTS):
        team = i % TEAMS
        row = {"agent_id": agent_name(i), "team": f"team-{team:02d}", "vendor": f"vendor-{team % VENDORS}",
               "since": FIRST_DAY - timedelta(days=30), "until": None, "created_at": now, "updated_at": now}
        if rng.random() < 0.1:
            other = (team + 7) % TEAMS
            rows.append({**row, "until": move - timedelta(days=1)})
            rows.append({**row, "team": f"team-{other:02d}", "vendor": f"vendor-{other % VENDORS}",
                         "since": move})
        else:
            rows.append(row)
    return rows


def team_on(periods: list[dict[str, Any]], day: date) -> tuple[str | None, str | None]:
    for p in periods:
        if p["since"] <= day and (p["until"] is None or day <= p["until"]):
            return p["team"], p["vendor"]
    return None, None


def scorecard_data(rng: random.Random, score: float, passed: bool, auto_fail: bool,
                   violations: list[dict[str, Any]]) -> dict[str, Any]:
    """A compact scorecard: ten criteria and the violations, without a transcript."""
    criteria = [{"id": f"c{k}", "title": f"Criterion {k}", "section": "main", "passed": rng.random() < 0.8,
                 "applicable": True, "points": 10.0, "max_points": 10.0} for k in range(10)]
    return {"format": "scorecard/v1", "score": score, "passed": passed, "auto_fail": auto_fail,
            "criteria": criteria, "violations": violations, "to_check": [], "transcript": []}


def load(url: str, n_calls: int, seed_value: int = 7) -> dict[str, Any]:
    """Load calls, scorecards, memberships and rollup rows with COPY; returns counts and seconds."""
    import sqlalchemy as sa

    from qa_service.storage import open_repository, rollups
    from qa_service.storage import tables as t

    rng = random.Random(seed_value)
    repo = open_repository(url)  # migrates
    repo.dispose()
    engine = sa.create_engine(url)
    members = memberships(rng)
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for m in members:
        by_agent.setdefault(m["agent_id"], []).append(m)
    sums: dict[Key, list[float]] = {}
    criteria: dict[tuple[str, date, str, str], list[Any]] = {}
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    cards = 0
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        with cur.copy("COPY team_memberships (agent_id, team, vendor, since, until, created_at, updated_at) "
                      "FROM STDIN") as copy:
            for m in members:
                copy.write_row((m["agent_id"], m["team"], m["vendor"], m["since"], m["until"],
                                m["created_at"], m["updated_at"]))
        call_cols = ("id, external_id, agent_id, call_date, status, rubric_id, rubric_version, "
                     "policy_pack_id, policy_pack_version, channels, source, input_kind, attempts, "
                     "created_at, updated_at")
        card_cols = ("call_id, version, agent_id, call_date, score, passed, auto_fail, rubric_id, "
                     "rubric_version, rubric_sha256, data, created_at, latest, provisional, reviewed_score, "
                     "reviewed_passed, reviewed_auto_fail, reviewed_violations")
        with cur.copy(f"COPY calls ({call_cols}) FROM STDIN") as calls_copy:
            for i in range(n_calls):
                agent = agent_name(rng.randrange(AGENTS))
                day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
                rubric = RUBRICS[0][0] if rng.random() < RUBRICS[0][1] else RUBRICS[1][0]
                cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                created = now + timedelta(microseconds=i)
                calls_copy.write_row((cid, f"ext-{i}", agent, day, "done", rubric, "1", "fees", "1", "stereo",
                                      "upload", "audio", 1, created, created))
        # Scorecards in a second pass over the same random stream would double the work: keep what the
        # second COPY needs from the first instead.
        raw.commit()
        rng2 = random.Random(seed_value + 1)
        cur.execute("SELECT id, agent_id, call_date, rubric_id, created_at FROM calls")
        rows = cur.fetchall()
        with cur.copy(f"COPY scorecards ({card_cols}) FROM STDIN") as copy:
            for cid, agent, day, rubric, created in rows:
                versions = 2 if rng2.random() < 0.03 else 1
                for v in range(1, versions + 1):
                    score = round(rng2.uniform(20, 100), 1)
                    passed = score >= 70
                    auto_fail = rng2.random() < 0.03
                    violations = [{"id": f"v{rng2.randrange(8)}", "kind": rng2.choice(KINDS)}
                                  for _ in range(rng2.choice((0, 0, 0, 1, 1, 2)))]
                    provisional = not passed and rng2.random() < 0.05
                    reviewed = rng2.random() < 0.02
                    r_score = min(100.0, score + 20) if reviewed else None
                    r_passed = (r_score >= 70) if r_score is not None else None
                    r_auto = False if reviewed else None
                    r_viol = json.dumps(violations[:-1]) if reviewed else None
                    latest = v == versions
                    data = scorecard_data(rng2, score, passed, auto_fail, violations)
                    copy.write_row((cid, v, agent, day, score, passed, auto_fail, rubric, "1", "0" * 64,
                                    json.dumps(data),
                                    created + timedelta(seconds=v), latest, provisional,
                                    r_score, r_passed, r_auto, r_viol))
                    cards += 1  # the table is new: its seq counts the rows in COPY order
                    if latest:
                        counted = violations[:-1] if reviewed else violations
                        for position, crit in enumerate(data["criteria"]):
                            c = criteria.setdefault((agent, day, rubric, crit["id"]),
                                                    [0, 0, crit["title"], crit["section"], 0, 0])
                            c[0] += 1
                            c[1] += crit["passed"]
                            c[4], c[5] = cards, position
                        s = sums.setdefault((agent, day, rubric), [0, 0.0, 0, 0, 0, 0, 0, 0])
                        s[7] = cards
                        s[0] += 1
                        s[1] += r_score if r_score is not None else score
                        s[2] += int(r_passed if r_passed is not None else passed)
                        s[3] += int(r_auto if r_auto is not None else auto_fail)
                        s[4] += int(provisional)
                        for item in counted:
                            s[5 if item["kind"] == "prohibited" else 6] += 1
        rollup_cols = ("agent_id, call_date, rubric_id, team, vendor, calls, score_sum, passed, auto_fail, "
                       "provisional, prohibited, outdated_policy, newest_seq")
        with cur.copy(f"COPY scorecard_rollups ({rollup_cols}) FROM STDIN") as copy:
            for (agent, day, rubric), s in sums.items():
                copy.write_row((agent, day, rubric, *team_on(by_agent[agent], day), *s))
        criterion_cols = ("agent_id, call_date, rubric_id, criterion_id, team, vendor, applied, passed, "
                          "title, section, newest_seq, position")
        with cur.copy(f"COPY criterion_rollups ({criterion_cols}) FROM STDIN") as copy:
            for (agent, day, rubric, crit_id), c in criteria.items():
                copy.write_row((agent, day, rubric, crit_id, *team_on(by_agent[agent], day), *c))
        raw.commit()
        with engine.begin() as conn:  # the team-day sums, as the migration fills them
            rollups.rebuild_groups(conn)
            group_rows = conn.execute(sa.select(sa.func.count()).select_from(
                t.group_criterion_rollups)).scalar_one()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return {"calls": n_calls, "scorecards": cards, "rollup_rows": len(sums),
            "criterion_rows": len(criteria), "group_criterion_rows": group_rows,
            "load_s": round(time.perf_counter() - t0, 1)}


def cursor_at(engine: Any, views: Any, f: Any, depth: int) -> str | None:
    """The cursor of the call `depth` places down the listing (found once, untimed, by OFFSET)."""

    from qa_service.storage import tables as t
    from qa_service.storage.views import encode_cursor

    c = t.calls
    query = (views._calls_query(f).order_by(c.c.call_date.desc(), c.c.created_at.desc(), c.c.id.desc())
             .offset(depth).limit(1))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return encode_cursor(row["call_date"], row["created_at"], str(row["id"]))


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every timing, with the rollup and (with --before) without it."""
    import sqlalchemy as sa

    from qa_service.storage import tables as t
    from qa_service.storage.repository import Scope
    from qa_service.storage.views import Filters, Views, of_group

    engine = sa.create_engine(url)
    views, direct = Views(engine), Views(engine, use_rollups=False)
    month = {"date_from": date(2026, 3, 1), "date_to": date(2026, 3, 31)}
    scoped = Scope(teams=("team-03", "team-07"))
    # The rollup loaded by COPY says what the scorecards say (checked on a sample, untimed).
    for agent in (agent_name(0), agent_name(17), agent_name(123)):
        for f in (Filters(agent_id=agent), Filters(agent_id=agent, **month)):
            assert views.totals(f) == direct.totals(f), f"rollup differs from the scorecards for {agent}"
    assert views.groups(Filters(**month, allowed=scoped), "team") == \
        direct.groups(Filters(**month, allowed=scoped), "team")
    assert views.criterion_rates_by(Filters(**month, allowed=scoped), "team") == \
        direct.criterion_rates_by(Filters(**month, allowed=scoped), "team")
    aggregates: dict[str, Callable[[Views], Any]] = {
        "agents_year": lambda v: v.agents(Filters()),
        "agents_month": lambda v: v.agents(Filters(**month)),
        "agents_scoped_year": lambda v: v.agents(Filters(allowed=scoped)),
        "teams_year": lambda v: v.groups(Filters(), "team"),
        "teams_month": lambda v: v.groups(Filters(**month), "team"),
        "teams_scoped_year": lambda v: v.groups(Filters(allowed=scoped), "team"),
        "vendors_year": lambda v: v.groups(Filters(), "vendor"),
        "vendors_month": lambda v: v.groups(Filters(**month), "vendor"),
        "one_agent_totals_and_trend": lambda v: (v.totals(Filters(agent_id=agent_name(42))),
                                                 v.weekly_trend(Filters(agent_id=agent_name(42)))),
        "one_team_totals_and_trend": lambda v: (v.totals(Filters(team="team-05")),
                                                v.weekly_trend(Filters(team="team-05"))),
        "criteria_one_agent_year": lambda v: v.criterion_rates(Filters(agent_id=agent_name(42))),
        "criteria_one_team_year": lambda v: v.criterion_rates(Filters(team="team-05")),
        "criteria_one_team_month": lambda v: v.criterion_rates(Filters(team="team-05", **month)),
        "criteria_everyone_year": lambda v: v.criterion_rates(Filters()),
        "agents_first_page_year": lambda v: v.agents_page(Filters(), None, 50),
        # Everything the agent route and page read: aggregate, trend, criteria, response times, overturns,
        # the first page of calls; and the page's violation choices.
        "one_agent_report_year": lambda v: v.agent_report(agent_name(42), Filters()),
        "one_agent_violation_choices_year": lambda v: v.violation_ids(Filters(agent_id=agent_name(42))),
        "teams_criteria_year": lambda v: v.criterion_rates_by(Filters(), "team"),
        "vendors_criteria_year": lambda v: v.criterion_rates_by(Filters(), "vendor"),
        "teams_criteria_scoped_month":
            lambda v: v.criterion_rates_by(Filters(**month, allowed=scoped), "team"),
    }
    out: dict[str, Any] = {"rollup": {}, "before": {}}
    for name, fn in aggregates.items():
        out["rollup"][name] = time_it(lambda fn=fn: fn(views), args.repeat)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t.calls)).scalar_one()
    lists = {"calls_deep": (Filters(), total // 2),
             "agent_calls_deep": (Filters(agent_id=agent_name(42)), total // AGENTS // 2),
             "team_calls_deep": (Filters(team="team-05"), total // TEAMS // 2)}
    for name, (f, depth) in lists.items():
        cursor = cursor_at(engine, views, f, depth)
        out["rollup"][name] = {"depth": depth, **time_it(lambda f=f, c=cursor: views.calls(f, c, 50),
                                                         args.repeat)}
    # The comparison pages read every group's criteria; before `criterion_rates_by`, one read a group.
    out["comparison_per_group"] = {
        by: time_it(lambda by=by: [views.criterion_rates(of_group(Filters(), by, g.name))
                                   for g in views.groups(Filters(), by)], max(3, args.repeat // 2))
        for by in ("team", "vendor")}
    if args.before:
        for name, fn in aggregates.items():
            out["before"][name] = time_it(lambda fn=fn: fn(direct), max(3, args.repeat // 2))
        for name, (f, depth) in lists.items():
            page = time_it(lambda f=f, d=depth: offset_page(engine, views, f, d), max(3, args.repeat // 2))
            out["before"][name] = {"depth": depth, **page}
    engine.dispose()
    # Everyone's criteria over a year is timed for scale; no route or page asks for it: not held to the bar.
    worst = max(v["median_ms"] for name, v in out["rollup"].items() if name not in NO_ROUTE)
    out["worst_median_ms"] = worst
    out["meets_target"] = worst < TARGET_MS
    return out


def offset_page(engine: Any, views: Any, f: Any, depth: int) -> None:
    """A page read as the listings read it before cursors: a total count, then OFFSET and LIMIT."""
    import sqlalchemy as sa

    from qa_service.storage import tables as t

    c = t.calls
    query = views._calls_query(f)
    with engine.connect() as conn:
        conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
        conn.execute(query.order_by(c.c.call_date.desc(), c.c.created_at.desc(), c.c.id.desc())
                     .offset(depth).limit(50)).all()


def run(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Make the database, load it, time the read side, drop the database."""
    from load import Database

    merged = parse_args([])
    for name, value in (vars(args) if args is not None else {}).items():
        setattr(merged, name, value)
    args = merged
    out: dict[str, Any] = {"target_ms": TARGET_MS, "cpus": os.cpu_count()}
    with Database("postgresql", Path("."), args.pg_url) as db:
        out["data"] = load(db.url, args.calls)
        out.update(measure(db.url, args))
        out["writes"] = writes(db.url, args.repeat)
        out["rebuild"] = rebuild(db.url)
    return out


def writes(url: str, repeat: int) -> dict[str, Any]:
    """Time writes that recount rollup rows at this size: a new scorecard version of one call (its
    agent's day and team day recounted) and a membership change moving one agent's year to another team
    and back (every day of it, and the team days it leaves and joins); then check the moved team days
    against the scorecards."""
    import dataclasses

    from qa_service.storage import open_repository
    from qa_service.storage.repository import Scope
    from qa_service.storage.views import Filters, Views

    repo = open_repository(url)
    try:
        agent = agent_name(42)
        call_id = repo.views.calls(Filters(agent_id=agent), None, 1).items[0].call_id
        card = repo.get_scorecard(call_id).data
        scores = iter(range(10_000))
        version = time_it(lambda: repo.add_scorecard_versions(
            [(call_id, {**card, "score": float(next(scores) % 100)})]), repeat)
        first = repo.teams.memberships(agent_id=agent)[0]
        moved = dataclasses.replace(first, team="team-19", vendor="vendor-3")
        swaps = iter(range(10_000))
        membership = time_it(lambda: repo.teams.put_memberships(
            [moved if next(swaps) % 2 == 0 else first]), max(3, repeat // 2) * 2)
        month = Filters(date_from=date(2026, 3, 1), date_to=date(2026, 3, 31),
                        allowed=Scope(teams=(first.team, moved.team)))
        assert repo.views.criterion_rates_by(month, "team") == \
            Views(repo.engine, use_rollups=False).criterion_rates_by(month, "team"), "team days differ"
    finally:
        repo.dispose()
    return {"one_scorecard_version": version, "membership_change_one_agent_year": membership}


def rebuild(url: str) -> dict[str, Any]:
    """Time the migrations' fill of the rollup from the scorecards (`rollups.rebuild`, then the team-day
    sums, `rollups.rebuild_groups`), and check that it gives the rows the load summed (row count and
    every column's total)."""
    import sqlalchemy as sa

    from qa_service.storage import rollups
    from qa_service.storage import tables as t

    r, cr, g = t.scorecard_rollups, t.criterion_rollups, t.group_criterion_rollups
    sums = [*rollups.SUMS, "newest_seq"]
    totals = sa.select(sa.func.count(), sa.func.count(r.c.team),
                       *(sa.func.round(sa.cast(sa.func.sum(r.c[c]), sa.Numeric), 1) for c in sums))
    crit_sums = ("applied", "passed", "newest_seq", "position")
    crit_totals = sa.select(sa.func.count(), sa.func.count(cr.c.team),
                            *(sa.func.sum(cr.c[c]) for c in crit_sums))
    group_totals = sa.select(sa.func.count(), sa.func.sum(g.c.applied), sa.func.sum(g.c.passed))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            loaded = (*conn.execute(totals).one(), *conn.execute(crit_totals).one(),
                      *conn.execute(group_totals).one())
            t0 = time.perf_counter()
            rollups.rebuild(conn)
            seconds = time.perf_counter() - t0
            rollups.rebuild_groups(conn)
            group_seconds = time.perf_counter() - t0 - seconds
            rebuilt = (*conn.execute(totals).one(), *conn.execute(crit_totals).one(),
                       *conn.execute(group_totals).one())
    finally:
        engine.dispose()
    assert tuple(loaded) == tuple(rebuilt), f"rebuilt rollup {rebuilt} differs from the loaded one {loaded}"
    return {"rows": int(rebuilt[0]), "criterion_rows": int(rebuilt[len(sums) + 2]),
            "group_criterion_rows": int(rebuilt[-3]), "seconds": round(seconds, 1),
            "group_seconds": round(group_seconds, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg-url", default=os.environ.get("QA_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=7, help="timed runs per figure (the median counts)")
    p.add_argument("--before", action="store_true",
                   help="also time the aggregates read from the scorecards, and OFFSET pages")
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(run(parse_args()), indent=2))  # noqa: T201
