"""The aggregates' rollup stays equal to what the scorecards say after every kind of write, on SQLite and
PostgreSQL: a new call scored, a rescore (a new version, another rubric), a review, a dispute overturned,
a dual review, a membership change, erasure and the retention sweep's writes.

Each check compares the views read from the rollup with the same views computed from the scorecards
themselves (`Views(engine, use_rollups=False)`), over the whole range, a date range, a rubric, a team,
a vendor and a scoped key; and the rollup's rows with a rollup rebuilt from scratch.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from qa_service.auth import issue_key
from qa_service.errors import InputError
from qa_service.services import disputes, reviews
from qa_service.storage import open_repository, rollups
from qa_service.storage import tables as t
from qa_service.storage.repository import ErasureNote, Membership, NewCall, Scope
from qa_service.storage.views import Filters, Views, of_group
from tests.test_views import SEED, Seed, make_scorecard, seed_calls

FILTERS = [
    Filters(),
    Filters(date_from=date(2026, 11, 3), date_to=date(2026, 11, 11)),
    Filters(rubric_id="intake"),
    Filters(team="alpha"),
    Filters(vendor="acme", date_from=date(2026, 11, 4)),
    Filters(allowed=Scope(teams=("beta",))),
    Filters(allowed=Scope(vendors=("acme",)), agent_id="agent-a"),
    Filters(allowed=Scope(agent="agent-b")),
]


def _rows(conn: sa.Connection, table: sa.Table = t.scorecard_rollups) -> list[tuple]:
    rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


def assert_rollup_right(repo) -> None:
    """The rollup-backed views equal the views over the scorecards, and its rows a fresh rebuild."""
    rolled, direct = repo.views, Views(repo.engine, use_rollups=False)
    assert rolled.use_rollups
    for f in FILTERS:
        assert rolled.totals(f) == direct.totals(f), f
        assert rolled.agents(f) == direct.agents(f), f
        assert rolled.groups(f, "team") == direct.groups(f, "team"), f
        assert rolled.groups(f, "vendor") == direct.groups(f, "vendor"), f
        assert rolled.weekly_trend(f) == direct.weekly_trend(f), f
        assert rolled.criterion_rates(f) == direct.criterion_rates(f), f
        for by in ("team", "vendor"):
            assert rolled.criterion_rates_by(f, by) == direct.criterion_rates_by(f, by), (f, by)
    tables = (t.scorecard_rollups, t.criterion_rollups, t.group_criterion_rollups)
    with repo.engine.connect() as conn:
        kept = tuple(_rows(conn, table) for table in tables)
        rollups.rebuild(conn)
        rollups.rebuild_groups(conn)
        rebuilt = tuple(_rows(conn, table) for table in tables)
        conn.rollback()
    assert kept == rebuilt
    assert bool(kept[1]) == bool(kept[0]), "the criteria are summed with their rows"
    assert all(row[5] > 0 for row in kept[0])  # no row left counting nothing
    assert bool(kept[2]) == any(row[3] is not None for row in kept[1]), "team days summed with their rows"


MEMBERS = [
    Membership(agent_id="agent-a", team="alpha", vendor="acme", since=date(2026, 11, 1),
               until=date(2026, 11, 9)),
    Membership(agent_id="agent-a", team="beta", vendor="acme", since=date(2026, 11, 10), until=None),
    Membership(agent_id="agent-b", team="alpha", vendor="bright", since=date(2026, 10, 1), until=None),
]


@pytest.fixture
def repo(database_url):
    repo = open_repository(database_url)
    yield repo
    repo.dispose()


def test_the_rollup_follows_every_write(repo):
    repo.teams.put_memberships(MEMBERS)
    ids = seed_calls(repo)
    assert_rollup_right(repo)
    total = repo.views.totals(Filters())
    assert total.count == 6 and total.violations == {"prohibited": 2, "outdated_policy": 2}

    # A new call scored.
    call_id = str(uuid.uuid4())
    repo.add_call(NewCall(id=call_id, external_id="ext-new", agent_id="agent-b", call_date=date(2026, 11, 3),
                          rubric_id="intake", rubric_version="1", policy_pack_id="fees",
                          policy_pack_version="2026-10", input_kind="transcript"))
    repo.start_call(call_id)
    new = Seed("new", "agent-b", date(2026, 11, 3), SEED[0].passed, ("guarantee",), 55.0, False)
    repo.finish_call(call_id, make_scorecard(new, "ext-new"))
    assert_rollup_right(repo)
    assert repo.views.totals(Filters()).count == 7

    # Rescoring (and a rescan: the same write) adds versions, one under another rubric.
    b1 = next(s for s in SEED if s.key == "b1")
    again = dataclasses.replace(b1, score=80.0, ok=True, rubric="chat-intake")
    lower = dataclasses.replace(SEED[0], score=60.0)
    repo.add_scorecard_versions([(ids["b1"], make_scorecard(again, "ext-b1")),
                                 (ids["a1"], make_scorecard(lower, "ext-a1"))])
    assert_rollup_right(repo)
    assert repo.views.totals(Filters(rubric_id="chat-intake")).count == 2

    # A review dismisses a violation, changing score, verdict and violation counts.
    qa = issue_key(repo, "qa", "Quinn")[0]
    reviews.add_review(store=repo, key=qa, call_id=ids["a3"], target="violation", target_id="fee-amount",
                       action="dismiss", reason="the fee was current")
    assert_rollup_right(repo)

    # An agent's dispute overturned by QA.
    agent = issue_key(repo, "agent", "Ana", Scope(agent="agent-a"))[0]
    before = repo.views.totals(Filters(agent_id="agent-a"))
    dispute = disputes.raise_dispute(store=repo, key=agent, call_id=ids["a2"], target="violation",
                                     target_id="guarantee", reason="I said nobody can guarantee it",
                                     window_days=7.0)
    disputes.resolve_dispute(store=repo, key=qa, dispute_id=dispute.id, outcome="overturned",
                             reason="negated")
    assert_rollup_right(repo)
    assert repo.views.totals(Filters(agent_id="agent-a")).violations != before.violations

    # Dual review: a first reviewer's verdict waits for a second one, then they agree.
    qa2 = issue_key(repo, "qa", "Rosa")[0]
    for key in (qa, qa2):
        reviews.add_review(store=repo, key=key, call_id=call_id, target="violation", target_id="guarantee",
                           action="dismiss", reason="negated", dual=frozenset({"auto_fail", "high_risk"}))
        assert_rollup_right(repo)

    # Memberships change: agent-a's second period moves to another team and vendor.
    repo.teams.put_memberships([dataclasses.replace(MEMBERS[1], team="gamma", vendor="bright")])
    assert_rollup_right(repo)
    assert [g.name for g in repo.views.groups(Filters(), "team")] == ["alpha", "gamma"]

    # The retention sweep's writes: earlier versions dropped, transcripts stripped, then calls erased.
    later = datetime.now(UTC) + timedelta(days=1)
    assert repo.drop_earlier_versions(later) > 0
    assert repo.strip_transcripts(later) > 0
    assert_rollup_right(repo)
    note = ErasureNote(id=str(uuid.uuid4()), key_id=None, key_name="retention", role=None)
    repo.erase_calls([ids["a3"], ids["b2"]], receipt=note)
    assert_rollup_right(repo)
    assert repo.views.totals(Filters()).count == 5
    repo.erase_calls([c for c in [*ids.values(), call_id]], receipt=note)
    assert_rollup_right(repo)
    assert repo.views.totals(Filters()).count == 0 and repo.views.agents(Filters()) == []


def test_verdict_and_violation_narrowing_read_the_scorecards(repo):
    """The rollup has no per-call verdicts: those filters take the scorecards, with the same answers."""
    repo.teams.put_memberships(MEMBERS)
    seed_calls(repo)
    f = Filters(verdict="fail", team="alpha")
    assert repo.views.totals(f) == Views(repo.engine, use_rollups=False).totals(f)
    assert repo.views.totals(f).count == 2  # b1 and a2 (a3 is agent-a's in team beta)
    assert repo.views.totals(Filters(violation="rude")).count == 1


def test_criterion_rates_of_every_team_and_vendor_in_one_read(repo):
    """The comparison pages' grouped read equals each group's own criterion rates, rollup or not."""
    repo.teams.put_memberships(MEMBERS)
    seed_calls(repo)
    for views in (repo.views, Views(repo.engine, use_rollups=False)):
        for f in [*FILTERS, Filters(verdict="fail")]:
            for by in ("team", "vendor"):
                grouped = views.criterion_rates_by(f, by)
                each = {g.name: views.criterion_rates(of_group(f, by, g.name)) for g in views.groups(f, by)}
                assert grouped == {name: rates for name, rates in each.items() if rates}, (f, by)
    assert set(repo.views.criterion_rates_by(Filters(), "team")) == {"alpha", "beta"}


def _walk(read) -> list:
    """Every item of a paged listing, page after page."""
    items, cursor = [], None
    for _ in range(20):
        page = read(cursor)
        assert len(page.items) <= 1
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("the pages never end")


def test_agent_team_and_vendor_listings_page_by_name(repo):
    """Read one item a page, from the rollup and from the scorecards, each listing gives what it gives
    whole: every agent, team and vendor once, in order, inside the filters' scope."""
    repo.teams.put_memberships(MEMBERS)
    seed_calls(repo)
    for views in (repo.views, Views(repo.engine, use_rollups=False)):
        for f in [*FILTERS, Filters(verdict="fail")]:
            whole = views.agents(f)
            assert _walk(lambda cursor, v=views, f=f: v.agents_page(f, cursor, 1)) == whole, f
            for by in ("team", "vendor"):
                assert _walk(lambda cursor, v=views, f=f, by=by: v.groups_page(f, by, cursor, 1)) == \
                    views.groups(f, by), (f, by)
    assert [a.agent_id for a in repo.views.agents(Filters())] == ["agent-a", "agent-b"]
    assert [g.name for g in repo.views.groups(Filters(), "team")] == ["alpha", "beta"]
    # A cursor names its listing: the agents' is not the teams'.
    cursor = repo.views.agents_page(Filters(), None, 1).next_cursor
    with pytest.raises(InputError):
        repo.views.groups_page(Filters(), "team", cursor, 1)


def test_concurrent_writers_of_one_agent_day_leave_the_rollup_right(database_url):
    """Threads score, rescore and review calls of the same agents' days at once (on PostgreSQL each in
    its own connection and transaction): the rows are locked before they are recounted, so the last
    writer counts what the others committed. agent-a and agent-c share a team and vendor: their writers
    recount the same team days."""
    from concurrent.futures import ThreadPoolExecutor

    repo = open_repository(database_url)
    try:
        repo.teams.put_memberships([*MEMBERS, Membership(agent_id="agent-c", team="alpha", vendor="acme",
                                                         since=date(2026, 10, 1))])
        seed_calls(repo)
        days = [date(2026, 11, 2), date(2026, 11, 3)]
        calls = []
        for i in range(40):
            call_id = str(uuid.uuid4())
            agent, day = ("agent-a", "agent-b", "agent-c")[i % 3], days[(i // 2) % 2] if i < 8 else days[0]
            repo.add_call(NewCall(id=call_id, external_id=f"ext-c{i}", agent_id=agent, call_date=day,
                                  rubric_id="intake", rubric_version="1", policy_pack_id="fees",
                                  policy_pack_version="2026-10", input_kind="transcript"))
            repo.start_call(call_id)
            calls.append((call_id, Seed(f"c{i}", agent, day, SEED[0].passed, ("rude",) if i % 3 else (),
                                        float(40 + i), i % 2 == 0)))

        def write(item: tuple[str, Seed]) -> None:
            call_id, seed = item
            repo.finish_call(call_id, make_scorecard(seed, seed.key))
            repo.add_scorecard_versions([(call_id, make_scorecard(dataclasses.replace(seed, score=99.0),
                                                                  seed.key))])

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(write, calls))
        assert_rollup_right(repo)
        assert repo.views.totals(Filters(date_from=days[0], date_to=days[1])).count == 40 + 2  # + a1, b1
    finally:
        repo.dispose()
