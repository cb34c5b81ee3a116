"""Contract tests of the repository: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa

from qa_service.errors import ConfigError, Conflict, NotFound
from qa_service.storage import NewCall, NewRescoreRun, SqlRepository, make_engine, open_repository
from qa_service.storage.migrate import current_revision, head_revision
from qa_service.storage.repository import RescoreOverlap


@pytest.fixture
def repo(database_url: str) -> SqlRepository:
    r = open_repository(database_url)
    yield r
    r.dispose()


def new_call(**kw) -> NewCall:
    values = dict(id=str(uuid.uuid4()), agent_id="agent-1", call_date=date(2026, 10, 14), rubric_id="r1",
                  rubric_version="1", policy_pack_id="p1", policy_pack_version="1")
    values.update(kw)
    return NewCall(**values)


def scorecard(score: float, passed: bool, auto_fail: bool = False) -> dict:
    return {"format": "scorecard/v1", "score": score, "passed": passed, "auto_fail": auto_fail,
            "rubric": {"id": "r1", "version": "1", "sha256": "ab" * 32}, "transcript": [], "criteria": []}


def test_migration_reaches_head_and_is_idempotent(database_url):
    engine = make_engine(database_url)
    assert current_revision(engine) is None
    open_repository(database_url).dispose()
    assert current_revision(engine) == head_revision()
    open_repository(database_url).dispose()  # a second start-up changes nothing and does not fail
    names = set(sa.inspect(engine).get_table_names())
    assert {"calls", "scorecards", "rubrics", "policy_packs", "api_keys", "rescore_runs",
            "alembic_version"} <= names
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("scorecards")}
    assert "ix_scorecards_agent_date" in indexes
    engine.dispose()


def test_add_and_get_call(repo):
    call, created = repo.add_call(new_call(external_id="ext-1", channels="stereo", source="webhook"))
    assert created
    got = repo.get_call(call.id)
    assert got == call
    assert (got.status, got.attempts, got.channels, got.source) == ("queued", 0, "stereo", "webhook")
    assert got.call_date == date(2026, 10, 14)
    assert got.created_at.tzinfo is not None
    assert repo.find_call("ext-1") == call
    assert repo.find_call("ext-2") is None


def test_same_external_id_returns_existing_call(repo):
    first, created = repo.add_call(new_call(external_id="ext-1"))
    second, created_again = repo.add_call(new_call(external_id="ext-1", agent_id="someone-else"))
    assert created and not created_again
    assert second.id == first.id and second.agent_id == "agent-1"


def test_calls_without_external_id_are_independent(repo):
    a, _ = repo.add_call(new_call())
    b, _ = repo.add_call(new_call())
    assert a.id != b.id


@pytest.mark.parametrize("bad_id", ["nope", "", str(uuid.uuid4())])
def test_unknown_call_is_not_found(repo, bad_id):
    with pytest.raises(NotFound):
        repo.get_call(bad_id)
    with pytest.raises(NotFound):
        repo.start_call(bad_id)
    with pytest.raises(NotFound):
        repo.get_scorecard(bad_id)


def test_status_transitions(repo):
    call, _ = repo.add_call(new_call())
    started = repo.start_call(call.id)
    assert (started.status, started.attempts) == ("processing", 1)
    failed = repo.fail_call(call.id, "audio could not be decoded")
    assert (failed.status, failed.failure_reason) == ("failed", "audio could not be decoded")
    again = repo.requeue_call(call.id)
    assert (again.status, again.failure_reason) == ("queued", None)
    assert repo.start_call(call.id).attempts == 2
    assert [c.id for c in repo.calls_with_status(["processing"])] == [call.id]
    assert repo.calls_with_status(["failed"]) == []
    repo.set_input_path(call.id, None)
    assert repo.get_call(call.id).input_path is None


def test_ended_calls_whose_input_was_left_in_plain_form(repo):
    left, _ = repo.add_call(new_call(input_path="/store/a/input.wav"))
    sealed, _ = repo.add_call(new_call(input_path="/store/b/input.wav.sealed"))
    gone, _ = repo.add_call(new_call(input_path="/store/c/input.wav"))
    working, _ = repo.add_call(new_call(input_path="/store/d/input.wav"))
    failed, _ = repo.add_call(new_call(input_path="/store/e/input.txt"))
    failed_sealed, _ = repo.add_call(new_call(input_path="/store/f/input.txt.sealed"))
    for call in (left, sealed, gone):
        repo.finish_call(call.id, {"score": 1.0, "passed": True, "rubric": {}})
    repo.set_input_path(gone.id, None)
    repo.start_call(working.id)
    for call in (failed, failed_sealed):
        repo.fail_call(call.id, "the database was away")
    assert [c.id for c in repo.calls_with_plain_input(["done"])] == [left.id]
    assert [c.id for c in repo.calls_with_plain_input(["done", "failed"])] == [left.id, failed.id]
    assert [c.id for c in repo.calls_with_plain_input(["processing"])] == [working.id]


def test_failed_calls_holding_an_input_by_when_they_failed(repo):
    from datetime import UTC, datetime, timedelta

    from qa_service.storage import tables

    plain, _ = repo.add_call(new_call(input_path="/store/a/input.txt"))
    sealed, _ = repo.add_call(new_call(input_path="/store/b/input.txt.sealed"))
    emptied, _ = repo.add_call(new_call(input_path="/store/c/input.txt"))
    retried, _ = repo.add_call(new_call(input_path="/store/d/input.txt"))
    for call in (plain, sealed, emptied, retried):
        repo.fail_call(call.id, "the job timed out")
    repo.set_input_path(emptied.id, None)
    repo.requeue_call(retried.id)
    now = datetime.now(UTC)
    assert repo.failed_calls_with_input(failed_before=now - timedelta(hours=1)) == []
    assert [c.id for c in repo.failed_calls_with_input(failed_before=now + timedelta(seconds=1))] == [
        plain.id, sealed.id]
    with repo.engine.begin() as conn:  # the sealed one failed two hours ago
        conn.execute(tables.calls.update().where(tables.calls.c.id == sealed.id)
                     .values(updated_at=now - timedelta(hours=2)))
    assert [c.id for c in repo.failed_calls_with_input(failed_before=now - timedelta(hours=1))] == [sealed.id]


def test_scorecard_versions_are_kept(repo):
    call, _ = repo.add_call(new_call())
    repo.start_call(call.id)
    first = repo.finish_call(call.id, scorecard(60.0, False))
    assert repo.get_call(call.id).status == "done"
    second = repo.finish_call(call.id, scorecard(80.0, True))
    assert (first.version, second.version) == (1, 2)
    assert repo.get_scorecard(call.id).score == 80.0
    assert repo.get_scorecard(call.id, 1).data["score"] == 60.0
    assert second.rubric_sha256 == "ab" * 32 and second.agent_id == "agent-1"
    with pytest.raises(NotFound):
        repo.get_scorecard(call.id, 3)


def test_agent_aggregate_uses_latest_version_in_date_range(repo):
    days = [date(2026, 10, 1), date(2026, 10, 10), date(2026, 10, 20)]
    ids = []
    for day, (score, passed) in zip(days, [(50.0, False), (90.0, True), (70.0, True)], strict=True):
        call, _ = repo.add_call(new_call(call_date=day))
        repo.finish_call(call.id, scorecard(score, passed))
        ids.append(call.id)
    repo.add_call(new_call(agent_id="agent-2"))  # another agent's call must not count
    # Rescoring the first call replaces it in the aggregate instead of counting twice.
    repo.finish_call(ids[0], scorecard(30.0, False, auto_fail=True))

    rows, summary = repo.agent_scorecards("agent-1")
    assert [r.call_id for r in rows] == [ids[2], ids[1], ids[0]]
    assert (summary.count, summary.mean_score, summary.pass_rate, summary.auto_fail_count) == (
        3, round((30 + 90 + 70) / 3, 2), round(2 / 3, 4), 1)
    assert rows[2].version == 2 and rows[0].data == {}

    rows, summary = repo.agent_scorecards("agent-1", date(2026, 10, 5), date(2026, 10, 20))
    assert [r.call_id for r in rows] == [ids[2], ids[1]]
    assert (summary.count, summary.mean_score, summary.pass_rate) == (2, 80.0, 1.0)

    rows, summary = repo.agent_scorecards("agent-1", limit=1)
    assert len(rows) == 1 and summary.count == 3

    rows, summary = repo.agent_scorecards("nobody")
    assert rows == [] and (summary.count, summary.mean_score, summary.pass_rate) == (0, None, None)


def test_rules_store_by_id_and_version(repo):
    text1, text2 = "id: r\nversion: '1'\n", "id: r\nversion: '2'\n"
    sha1, sha2 = (hashlib.sha256(t.encode()).hexdigest() for t in (text1, text2))
    stored, created = repo.put_rules("rubric", "r", "1", sha1, text1)
    assert created and stored.text == text1
    again, created = repo.put_rules("rubric", "r", "1", sha1, text1)
    assert not created and again == stored
    with pytest.raises(Conflict, match="new version"):
        repo.put_rules("rubric", "r", "1", sha2, text2)
    repo.put_rules("rubric", "r", "2", sha2, text2)
    assert repo.get_rules("rubric", "r").version == "2"
    assert repo.get_rules("rubric", "r", "1").sha256 == sha1
    assert [(r.id, r.version) for r in repo.list_rules("rubric")] == [("r", "1"), ("r", "2")]
    # Rubrics and policy packs are separate namespaces.
    assert repo.list_rules("policy_pack") == []
    with pytest.raises(NotFound, match="policy pack 'r'"):
        repo.get_rules("policy_pack", "r")


def test_api_keys(repo):
    key = repo.add_key("ops", "qa", "cd" * 32)
    assert repo.key_by_hash("cd" * 32) == key
    assert repo.key_by_hash("ef" * 32) is None
    assert repo.revoke_key(key.id).revoked
    assert repo.key_by_hash("cd" * 32).revoked
    assert [k.id for k in repo.list_keys()] == [key.id]
    with pytest.raises(NotFound):
        repo.revoke_key(str(uuid.uuid4()))
    with pytest.raises(sa.exc.IntegrityError):
        repo.add_key("bad", "root", "01" * 32)  # unknown role is refused by the database too


def new_run(**kw) -> NewRescoreRun:
    values = dict(id=str(uuid.uuid4()), rubric_id="r1", rubric_version="2", requested_by_name="qa key",
                  requested_by_key_id=str(uuid.uuid4()))
    values.update(kw)
    return NewRescoreRun(**values)


def test_rescore_runs_move_from_queued_to_done(repo):
    asked = new_run(policy_pack_id="p1", policy_pack_version="7", since=date(2026, 10, 1),
                    until=date(2026, 10, 31), dry_run=True)
    run = repo.add_rescore_run(asked)
    assert repo.get_rescore_run(run.id) == run
    assert (run.status, run.rubric_id, run.rubric_version, run.policy_pack_id, run.policy_pack_version) == (
        "queued", "r1", "2", "p1", "7")
    assert (run.since, run.until, run.dry_run) == (date(2026, 10, 1), date(2026, 10, 31), True)
    assert (run.requested_by_key_id, run.requested_by_name) == (asked.requested_by_key_id, "qa key")
    assert run.created_at.tzinfo is not None
    assert (run.started_at, run.finished_at, run.summary, run.failure_reason) == (None, None, None, None)

    started = repo.start_rescore_run(run.id)
    assert started.status == "running" and started.started_at is not None
    with pytest.raises(Conflict, match="running"):
        repo.start_rescore_run(run.id)  # a second job for the same run does not start it again

    summary = {"calls": 2, "score_changed": 1, "mean_score_change": -12.5, "flipped_to_fail": 1,
               "flipped_to_pass": 0, "agents_with_flips": {"ana": {"to_fail": 1}},
               "new_violations": {"outdated_policy:fee": 1}, "vanished_violations": {},
               "flipped_calls": [{"call_id": "c1", "new_violations": ["outdated_policy:fee"]}],
               "refresher": {"ana": {"fee": [{"call_id": "c1", "call_date": "2026-10-20", "detail": "x"}]}}}
    done = repo.finish_rescore_run(run.id, summary)
    assert done.status == "done" and done.summary == summary
    assert done.finished_at is not None and done.finished_at >= done.started_at >= done.created_at
    assert repo.get_rescore_run(run.id).summary == summary
    # A reconciler that saw it running a moment ago cannot turn a finished run into a failed one.
    assert repo.fail_rescore_run(run.id, "the worker stopped") == done


def test_rescore_runs_fail_with_a_reason_and_keep_each_calls_pack(repo):
    run = repo.add_rescore_run(new_run(requested_by_key_id=None, requested_by_name="cli"))
    assert (run.policy_pack_id, run.policy_pack_version, run.since, run.until, run.dry_run) == (
        None, None, None, None, False)
    failed = repo.fail_rescore_run(run.id, "no rubric 'r1' version '2' is stored " + "x" * 3000)
    assert failed.status == "failed" and failed.finished_at is not None and failed.summary is None
    assert failed.failure_reason.startswith("no rubric") and len(failed.failure_reason) == 2000
    with pytest.raises(Conflict, match="failed"):
        repo.start_rescore_run(run.id)


def test_rescore_runs_are_listed_newest_first(repo):
    runs = [repo.add_rescore_run(new_run(rubric_id=f"r{n}")) for n in range(4)]
    repo.start_rescore_run(runs[1].id)
    repo.fail_rescore_run(runs[2].id, "broken")
    assert [r.id for r in repo.list_rescore_runs()] == [r.id for r in reversed(runs)]
    assert [r.id for r in repo.list_rescore_runs(limit=2)] == [runs[3].id, runs[2].id]
    assert [r.id for r in repo.list_rescore_runs(statuses=["queued", "running"])] == [
        runs[3].id, runs[1].id, runs[0].id]
    assert repo.list_rescore_runs(statuses=["done"]) == []


def test_one_storing_rescore_run_per_rubric_at_a_time(repo):
    first = repo.add_rescore_run(new_run())
    assert repo.storing_rescore_run("r1") == first
    with pytest.raises(RescoreOverlap, match=f"{first.id} of rubric 'r1' is queued") as refused:
        repo.add_rescore_run(new_run(rubric_version="3"))
    assert refused.value.other == first
    dry = repo.add_rescore_run(new_run(dry_run=True))  # stores nothing, so it may run beside it
    other_rubric = repo.add_rescore_run(new_run(rubric_id="r2"))
    repo.start_rescore_run(first.id)
    with pytest.raises(RescoreOverlap, match="running"):
        repo.add_rescore_run(new_run())
    repo.fail_rescore_run(first.id, "worker killed")
    assert repo.storing_rescore_run("r1") is None
    again = repo.add_rescore_run(new_run())
    assert repo.storing_rescore_run("r1") == again
    assert {r.id for r in repo.list_rescore_runs()} == {first.id, dry.id, other_rubric.id, again.id}


def test_storing_rescore_runs_asked_at_once_are_stored_once(repo):
    # A check before the insert would let both through; the database lets one.
    barrier = threading.Barrier(6)

    def ask() -> str:
        barrier.wait()
        try:
            return repo.add_rescore_run(new_run()).id
        except RescoreOverlap:
            return "refused"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda _: ask(), range(6)))
    stored = [o for o in outcomes if o != "refused"]
    assert len(stored) == 1 and outcomes.count("refused") == 5
    assert [r.id for r in repo.list_rescore_runs()] == stored


@pytest.mark.parametrize("bad_id", ["nope", "", str(uuid.uuid4())])
def test_unknown_rescore_run_is_not_found(repo, bad_id):
    for action in (repo.get_rescore_run, repo.start_rescore_run, lambda i: repo.fail_rescore_run(i, "x"),
                   lambda i: repo.finish_rescore_run(i, {})):
        with pytest.raises(NotFound, match="no rescore run"):
            action(bad_id)


def test_rescore_run_names_a_policy_pack_with_its_version(repo):
    # The database refuses a pack without its version too, not only the API.
    with pytest.raises(sa.exc.IntegrityError):
        repo.add_rescore_run(new_run(policy_pack_id="p1"))
    with pytest.raises(sa.exc.IntegrityError):
        repo.add_rescore_run(new_run(policy_pack_version="1"))
    assert repo.list_rescore_runs() == []


def test_foreign_keys_are_enforced(repo):
    from qa_service.storage import tables as t

    with pytest.raises(sa.exc.IntegrityError), repo.engine.begin() as conn:
        conn.execute(t.scorecards.insert().values(
            call_id=str(uuid.uuid4()), version=1, agent_id="a", call_date=date(2026, 1, 1), score=1.0,
            passed=True, auto_fail=False, rubric_id="r", rubric_version="1", rubric_sha256="", data={},
            created_at=sa.func.now()))


def test_concurrent_writers_do_not_fail(repo):
    # The API and a worker write at once; SQLite must wait (busy timeout), not raise "locked".
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(n):
                call, _ = repo.add_call(new_call())
                repo.start_call(call.id)
                repo.finish_call(call.id, scorecard(50.0, False))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(10,)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert repo.agent_scorecards("agent-1", limit=1000)[1].count == 40


def test_sqlite_runs_in_wal_mode(sqlite_url):
    repo = open_repository(sqlite_url)
    with repo.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    repo.dispose()


def test_plain_postgresql_url_uses_psycopg3():
    engine = make_engine("postgresql://user@127.0.0.1:1/db")
    assert engine.dialect.driver == "psycopg"


def test_unknown_database_is_a_config_error():
    with pytest.raises(ConfigError, match="unsupported database"):
        make_engine("mysql://x@y/z")
    with pytest.raises(ConfigError):
        make_engine("not a url")


def test_sqlite_readers_do_not_wait_for_a_writer(sqlite_url):
    from qa_service.storage.db import writing

    repo = open_repository(sqlite_url)
    call, _ = repo.add_call(new_call())
    with writing(repo.engine) as conn:  # a long write transaction holds the write lock
        conn.execute(sa.text("UPDATE calls SET agent_id = 'changing'"))
        started = time.monotonic()
        result: list = []
        reader = threading.Thread(target=lambda: result.append(repo.get_call(call.id)))
        reader.start()
        reader.join(timeout=5)
        assert result and time.monotonic() - started < 2, "a read must not queue behind the writer"
        assert result[0].agent_id == "agent-1", "and it sees the last committed state"
    repo.dispose()


@dataclass
class FakeRules:
    id: str
    version: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def test_cli_scorecards_add_versions_per_external_id(repo, make_settings):
    from qa_service.records import CallMeta
    from qa_service.services.calls import store_scored_call

    rubric, pack = FakeRules("r1", "1", "id: r1\n"), FakeRules("p1", "1", "id: p1\n")
    card = {**scorecard(70.0, True), "call_id": "cli-call-1", "agent_id": "agent-9",
            "call_date": "2026-10-14", "models": {"source": "text"}}
    meta = CallMeta("cli-call-1", "agent-9", date(2026, 10, 14), "auto")

    def save(card, rubric):
        return store_scored_call(store=repo, settings=make_settings(), meta=meta, card=card, rubric=rubric,
                                 policies=pack, input_kind="transcript")

    first = save(card, rubric)
    second = save({**card, "score": 75.0}, rubric)
    assert (first.call_id, first.version, second.version) == (second.call_id, 1, 2)
    call = repo.get_call(first.call_id)
    assert (call.external_id, call.source, call.input_kind) == ("cli-call-1", "cli", "transcript")
    assert call.status == "done"
    assert repo.get_rules("rubric", "r1").sha256 == rubric.sha256
    # An edited rubric that kept its version does not stop the scorecard from being stored.
    edited = FakeRules("r1", "1", "id: r1\ntitle: edited\n")
    third = save(card, edited)
    assert third.version == 3 and repo.get_rules("rubric", "r1").sha256 == rubric.sha256


def test_migrations_match_the_table_definitions(database_url):
    # The repository queries tables.py; the database is built by the migrations: they must agree.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from qa_service.storage.search import is_search_table
    from qa_service.storage.tables import metadata

    def described(name, type_, _parent):  # the search index's SQL differs per database (storage/search.py)
        return not (type_ == "table" and is_search_table(name))

    repo = open_repository(database_url)
    with repo.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": described})
        diff = compare_metadata(context, metadata)
    repo.dispose()
    assert diff == []


def engine_at_revision(database_url: str, revision: str) -> sa.Engine:
    """An engine on a database migrated only as far as `revision` (to test the migrations after it)."""
    from alembic import command

    from qa_service.storage.db import writing
    from qa_service.storage.migrate import alembic_config

    engine = make_engine(database_url)
    cfg = alembic_config()
    with writing(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def test_migration_resolves_storing_rescore_runs_that_overlap(database_url):
    # Made before the database refused overlaps: per rubric the oldest storing run stays.
    from datetime import UTC, datetime, timedelta

    from qa_service.storage import tables as t
    from qa_service.storage.db import writing

    engine = engine_at_revision(database_url, "0004")
    start = datetime(2026, 11, 30, tzinfo=UTC)
    runs = [("r1", "running", False), ("r1", "queued", False), ("r1", "queued", True),
            ("r1", "done", False), ("r2", "queued", False), ("r2", "queued", False)]
    ids = [str(uuid.uuid4()) for _ in runs]
    with writing(engine) as conn:
        conn.execute(t.rescore_runs.insert(), [
            {"id": run_id, "status": status, "rubric_id": rubric, "rubric_version": "1", "dry_run": dry,
             "requested_by_name": "qa", "created_at": start + timedelta(minutes=n)}
            for n, (run_id, (rubric, status, dry)) in enumerate(zip(ids, runs, strict=True))])
    repo = open_repository(database_url)
    assert current_revision(engine) == head_revision()
    statuses = [repo.get_rescore_run(run_id).status for run_id in ids]
    assert statuses == ["running", "failed", "queued", "done", "queued", "failed"]
    assert "already under way" in repo.get_rescore_run(ids[1]).failure_reason
    assert repo.storing_rescore_run("r1").id == ids[0] and repo.storing_rescore_run("r2").id == ids[4]
    with pytest.raises(RescoreOverlap):
        repo.add_rescore_run(new_run(rubric_id="r2"))
    repo.dispose()
    engine.dispose()
