"""The `latest` flag on scorecards: one per call, on the newest version, kept by writes and the migration.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from qa_service.errors import NotFound
from qa_service.storage import open_repository
from qa_service.storage import tables as t
from qa_service.storage.db import writing
from qa_service.storage.migrate import current_revision, head_revision
from qa_service.storage.views import Filters
from tests.test_storage import engine_at_revision, new_call, scorecard


def latest_versions(engine: sa.Engine) -> dict[str, list[int]]:
    """Versions flagged latest, per call id."""
    sc = t.scorecards
    out: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for call_id, version in conn.execute(sa.select(sc.c.call_id, sc.c.version).where(sc.c.latest)
                                             .order_by(sc.c.version)):
            out.setdefault(str(call_id), []).append(int(version))
    return out


def test_each_write_moves_the_flag_to_the_newest_version(database_url):
    repo = open_repository(database_url)
    a, _ = repo.add_call(new_call(agent_id="ag"))
    b, _ = repo.add_call(new_call(agent_id="ag"))
    repo.finish_call(a.id, scorecard(40.0, False))
    repo.finish_call(b.id, scorecard(50.0, False))
    assert latest_versions(repo.engine) == {a.id: [1], b.id: [1]}
    repo.finish_call(a.id, scorecard(60.0, False))
    assert latest_versions(repo.engine) == {a.id: [2], b.id: [1]}
    # Rescoring in bulk, with one call twice in the batch: two new versions, the second is the latest.
    assert repo.add_scorecard_versions([(a.id, scorecard(70.0, True)), (b.id, scorecard(80.0, True)),
                                        (b.id, scorecard(90.0, True))]) == 3
    assert latest_versions(repo.engine) == {a.id: [3], b.id: [3]}
    rows, summary = repo.agent_scorecards("ag")
    assert sorted((r.call_id, r.version, r.score) for r in rows) == sorted([(a.id, 3, 70.0), (b.id, 3, 90.0)])
    assert (summary.count, summary.mean_score, summary.pass_rate) == (2, 80.0, 1.0)
    assert sorted(c.score for c in repo.latest_scorecards()) == [70.0, 90.0]
    assert repo.get_scorecard(b.id).version == 3 and repo.get_scorecard(b.id, 2).score == 80.0
    counts = repo.views.counts()
    assert (counts.scorecards, counts.scored_calls) == (6, 2)
    repo.dispose()


def test_a_failed_write_leaves_the_flag_where_it_was(database_url):
    repo = open_repository(database_url)
    a, _ = repo.add_call(new_call())
    repo.finish_call(a.id, scorecard(40.0, False))
    with pytest.raises(NotFound):  # the unknown call aborts the whole batch
        repo.add_scorecard_versions([(a.id, scorecard(70.0, True)), (str(uuid.uuid4()), scorecard(1, False))])
    assert latest_versions(repo.engine) == {a.id: [1]}
    assert repo.get_scorecard(a.id).score == 40.0
    repo.dispose()


def test_migration_flags_the_newest_existing_version(database_url):
    # A database made before the flag existed, with rescored calls, is upgraded in place.
    engine = engine_at_revision(database_url, "0001")
    now = datetime.now(UTC)
    versions = {str(uuid.uuid4()): n for n in (1, 2, 3)}
    with writing(engine) as conn:
        for call_id, n in versions.items():
            # Only columns the 0001 schema has: `latest` is left out.
            conn.execute(t.calls.insert().values(
                id=call_id, agent_id="ag", call_date=date(2026, 10, 1), status="done", rubric_id="r1",
                rubric_version="1", policy_pack_id="p1", policy_pack_version="1", channels="auto",
                source="upload", input_kind="audio", attempts=1, created_at=now, updated_at=now))
            conn.execute(t.scorecards.insert(), [
                {"call_id": call_id, "version": v, "agent_id": "ag", "call_date": date(2026, 10, 1),
                 "score": 10.0 * v, "passed": v == n, "auto_fail": False, "rubric_id": "r1",
                 "rubric_version": "1", "rubric_sha256": "", "data": {"score": 10.0 * v}, "created_at": now}
                for v in range(1, n + 1)])
    repo = open_repository(database_url)
    assert current_revision(engine) == head_revision()
    assert latest_versions(engine) == {call_id: [n] for call_id, n in versions.items()}
    _, summary = repo.agent_scorecards("ag")
    assert (summary.count, summary.mean_score, summary.pass_rate) == (3, 20.0, 1.0)
    assert repo.views.totals(Filters(agent_id="ag")).count == 3
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("scorecards")}
    assert "ix_scorecards_agent_latest" in indexes
    repo.dispose()
    engine.dispose()


def test_scorecard_text_reads_status_and_stored_json_together(database_url):
    repo = open_repository(database_url)
    call, _ = repo.add_call(new_call())
    queued = repo.scorecard_text(call.id)
    assert (queued.status, queued.version, queued.json) == ("queued", None, None)
    first = {**scorecard(40.0, False), "transcript": [{"speaker": "agent", "text": "Grüß Gott — ¿sí? 你好"}]}
    repo.finish_call(call.id, first)
    repo.finish_call(call.id, scorecard(90.0, True))
    latest = repo.scorecard_text(call.id)
    assert (latest.call_id, latest.status, latest.version) == (call.id, "done", 2)
    assert json.loads(latest.json) == scorecard(90.0, True)
    older = repo.scorecard_text(call.id, 1)
    assert older.version == 1 and json.loads(older.json) == first
    missing = repo.scorecard_text(call.id, 3)
    assert (missing.status, missing.version, missing.json) == ("done", None, None)
    repo.fail_call(call.id, "decoder gave up")
    failed = repo.scorecard_text(call.id)
    assert (failed.status, failed.failure_reason) == ("failed", "decoder gave up")
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(NotFound, match="no call"):
            repo.scorecard_text(unknown)
    repo.dispose()


@pytest.mark.postgres
def test_postgresql_reads_survive_pooled_connections_being_dropped(pg_url):
    # A database restart kills every pooled connection; the next read must reconnect, not fail.
    repo = open_repository(pg_url)
    call, _ = repo.add_call(new_call())
    repo.finish_call(call.id, scorecard(70.0, True))
    with repo.engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    admin.dispose()
    assert repo.scorecard_text(call.id).version == 1
    with repo.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid
    repo.dispose()
