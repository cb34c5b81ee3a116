"""The audit log: reads of transcripts and scorecards and every change are recorded (who, when, what)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from qa_service.api.review import audited
from qa_service.storage import open_repository
from qa_service.storage import review as store
from qa_service.storage import tables as t
from tests import test_review
from tests.test_review import post, scored

api = test_review.api  # the same fixture: an app with one key per role over SQLite and Redis

SECRET_WORDS = "we guarantee approval"
REASON = "notice given before the recording started"


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/v1/calls/abc", ("read_call", "call", "abc")),
    ("GET", "/v1/calls/abc/scorecard", ("read_scorecard", "call", "abc")),
    ("GET", "/v1/calls/abc/scorecard/reviewed", ("read_scorecard", "call", "abc")),
    ("POST", "/v1/calls/abc/reviews", ("review", "call", "abc")),
    ("POST", "/v1/calls", ("submit_call", "call", None)),
    ("POST", "/v1/rubrics", ("put_rules", "rubric", None)),
    ("POST", "/v1/rescores", ("start_rescore", "rescore", None)),
    ("GET", "/calls/abc", ("read_call", "call", "abc")),
    ("GET", "/v1/agents/a-1/scorecards", ("read_scorecards", "agent", "a-1")),
    ("GET", "/v1/calls", None),
    ("GET", "/healthz", None),
    ("DELETE", "/v1/calls/abc", None),
])
def test_which_requests_are_audited(method, path, expected):
    assert audited(method, path) == expected


def rows(api) -> list[dict]:
    with api.repo.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t.audit_log).order_by(t.audit_log.c.id)).mappings()]


def test_scorecard_reads_and_reviews_are_audited_without_transcript_text(api):
    call_id = scored(api)
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert api.client.get(f"/v1/calls/{call_id}/scorecard", headers=api.h("supervisor")).status_code == 200
    assert post(api, call_id, reason=REASON).status_code == 201
    assert api.client.get(f"/v1/calls/{call_id}/scorecard/reviewed", headers=api.h()).status_code == 200

    keys = {k.name: k for k in api.repo.list_keys()}
    mine = [r for r in rows(api) if r["target_id"] == call_id]
    assert [(r["action"], r["key_name"], r["role"]) for r in mine] == [
        ("submit_call", "qa key", "qa"), ("read_scorecard", "supervisor key", "supervisor"),
        ("review", "qa key", "qa"), ("read_scorecard", "qa key", "qa")]
    assert mine[1]["key_id"] == keys["supervisor key"].id
    assert mine[1]["details"] == "status=200 version=1"
    assert mine[2]["details"] == "status=201"
    assert all(store._utc(r["at"]) >= before for r in mine[1:])
    # No transcript text, evidence or review reason ever reaches the audit log.
    dump = repr(rows(api))
    assert SECRET_WORDS not in dump and REASON not in dump and "guarantee" not in dump


def test_refused_and_anonymous_requests(api):
    call_id = scored(api)
    assert api.client.get(f"/v1/calls/{call_id}/scorecard").status_code == 401
    assert api.client.get(f"/v1/calls/{call_id}/scorecard", headers=api.h("telephony")).status_code == 403
    assert api.client.get(f"/v1/calls/{uuid.uuid4()}", headers=api.h()).status_code == 404
    reads = [r for r in rows(api) if r["action"] in ("read_scorecard", "read_call")]
    # Without a key nobody can be named and nothing was read; a refused key is named with its status.
    assert [(r["role"], r["details"]) for r in reads] == [("telephony", "status=403"), ("qa", "status=404")]


def test_rules_uploads_name_the_rules(api):
    text = "id: tiny\nversion: '1'\ntitle: t\npass_mark: 50\ncriteria:\n  - id: a\n    title: A\n" \
           "    section: s\n    speaker: agent\n    points: 1\n    phrases: [hello]\nprohibited: []\n"
    r = api.client.post("/v1/rubrics", content=text, headers={**api.h(), "Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    last = rows(api)[-1]
    assert (last["action"], last["target_kind"], last["target_id"]) == ("put_rules", "rubric", "tiny/1")


def test_audit_route_is_admin_only_and_filters(api):
    a = scored(api)
    b = scored(api)
    api.client.get(f"/v1/calls/{a}", headers=api.h("supervisor"))
    api.client.get(f"/v1/calls/{b}/scorecard", headers=api.h())
    for role in ("qa", "supervisor", "telephony"):
        assert api.client.get("/v1/audit", headers=api.h(role)).status_code == 403
    got = api.client.get(f"/v1/audit?call_id={a}", headers=api.h("admin")).json()
    assert [r["action"] for r in got] == ["read_call", "submit_call"]  # newest first
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.client.get("/v1/audit", params={"from": future}, headers=api.h("admin")).json() == []
    assert api.client.get("/v1/audit?to=2000-01-01T00:00:00", headers=api.h("admin")).json() == []
    supervisor = next(k for k in api.repo.list_keys() if k.role == "supervisor")
    by_key = api.client.get(f"/v1/audit?key_id={supervisor.id}", headers=api.h("admin")).json()
    # The supervisor's refused look at the audit log is there too, with its status.
    assert [(r["action"], r["target_id"], r["details"]) for r in by_key] == [
        ("read_audit", None, "status=403"), ("read_call", a, "status=200")]
    # Reading the audit log is itself recorded.
    assert rows(api)[-1]["action"] == "read_audit"


def test_audit_storage(database_url):
    repo = open_repository(database_url)
    try:
        t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        key = str(uuid.uuid4())
        store.audit(repo.engine, "read_scorecard", key_id=key, key_name="Ana", role="qa", target_kind="call",
                    target_id="c1", details="status=200", at=t0)
        store.audit(repo.engine, "review", key_id=key, key_name="Ana", role="qa", target_kind="call",
                    target_id="c1", details="x" * 500, at=t0 + timedelta(minutes=5))
        store.audit(repo.engine, "put_rules", target_kind="rubric", target_id="r/1",
                    at=t0 + timedelta(hours=1))
        by_call = store.audit_entries(repo.engine, target_id="c1")
        assert [e.action for e in by_call] == ["review", "read_scorecard"]
        assert len(by_call[0].details or "") == store.DETAILS_MAX
        by_key = store.audit_entries(repo.engine, key_id=key)
        assert [e.action for e in by_key] == ["review", "read_scorecard"]
        window = store.audit_entries(repo.engine, since=t0 + timedelta(minutes=1),
                                     until=t0 + timedelta(minutes=30))
        assert [e.action for e in window] == ["review"]
        assert window[0].at == t0 + timedelta(minutes=5)
        assert store.audit_entries(repo.engine, limit=1)[0].action == "put_rules"
    finally:
        repo.dispose()
