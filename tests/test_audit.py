"""The audit log: reads of transcripts and scorecards and every change are recorded (who, when, what)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from qa_service.access.audit import audited
from qa_service.access.session import COOKIE_NAME
from qa_service.errors import InputError
from qa_service.services import audit
from qa_service.storage import open_repository, paging
from qa_service.storage import review as store
from qa_service.storage import tables as t
from tests import test_review
from tests.paging_support import walk, walk_api
from tests.test_api import Api, seed_rules
from tests.test_ratelimit import fresh_window
from tests.test_review import post, scored
from tests.test_web import sign_in, sign_out

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
    ("GET", "/v1/calls", ("list_calls", "call", None)),
    ("GET", "/v1/calls?format=csv", ("export_calls", "call", None)),
    ("GET", "/v1/calls?agent_id=agent-mira&format=json", ("list_calls", "agent", "agent-mira")),
    ("GET", "/v1/calls?format=csv&agent_id=agent-mira", ("export_calls", "agent", "agent-mira")),
    ("GET", "/v1/agents", ("list_agents", "agent", None)),
    ("GET", "/v1/agents/a-1/summary", ("read_scorecards", "agent", "a-1")),
    ("GET", "/v1/policy-currency?agent_id=a-2", ("read_policy_currency", "agent", "a-2")),
    ("GET", "/v1/review-queue", ("read_review_queue", "call", None)),
    ("GET", "/v1/review-queue?agent_id=a-3", ("read_review_queue", "agent", "a-3")),
    ("GET", "/v1/audit?agent_id=a-3", ("read_audit", None, None)),  # not a filter of that route
    ("GET", "/v1/rescores", ("list_rescores", "rescore", None)),
    ("GET", "/v1/rescores/r1", ("read_rescore", "rescore", "r1")),
    ("GET", "/v1/keys", ("list_keys", "key", None)),
    ("POST", "/v1/keys/k1/revoke", ("revoke_key", "key", "k1")),
    ("GET", "/agents", ("list_agents", "agent", None)),
    ("GET", "/agents/a-1", ("read_scorecards", "agent", "a-1")),
    ("GET", "/calls?agent_id=a-1", ("list_calls", "agent", "a-1")),
    ("POST", "/sign-in", ("sign_in", "key", None)),
    ("GET", "/healthz", None),
    ("GET", "/v1/rubrics", None),
    ("POST", "/sign-out", None),
    # Erasures name no target: the erasure's receipt rows do, without external or agent ids.
    ("DELETE", "/v1/calls/abc", ("erase", None, None)),
    ("DELETE", "/v1/calls?external_id=ext-1", ("erase", None, None)),
    ("DELETE", "/v1/agents/a-1/calls", ("erase", None, None)),
    ("DELETE", "/v1/calls/abc/reviews", None),
])
def test_which_requests_are_audited(method, path, expected):
    path, _, query = path.partition("?")
    assert audited(method, path, query.encode()) == expected


# Routes that read no call, scorecard, agent, review, rescore, audit or key data and change nothing
# stored, left out of the audit log on purpose. Anything else the app serves must be audited.
NOT_AUDITED = {
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs-assets"),
    ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/static"),
    # Rules are the company's own texts: no personal or performance data.
    ("GET", "/v1/rubrics"), ("GET", "/v1/policy-packs"), ("GET", "/v1/rubrics/{rubric_id}/{version}"),
    ("GET", "/v1/policy-packs/{pack_id}/{version}"),
    # The sign-in form shows nothing (a signed-in visitor is sent on to an audited page); signing out
    # ends a session.
    ("GET", "/"), ("POST", "/sign-out"),
    # The upload page polls the status of the calls its own key uploaded every few seconds; opening the
    # page is recorded.
    ("GET", "/upload/recent"),
}


def app_routes(app) -> list[tuple[str, str]]:
    """(method, path template) for every route the app serves, included routers and mounts too."""
    from fastapi.routing import iter_route_contexts

    found = []
    for route in iter_route_contexts(app.routes):
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, route.path))
    return found


def test_every_route_that_reads_or_changes_data_is_audited(make_settings):
    from qa_service.app import create_app

    app = create_app(make_settings())
    routes = app_routes(app)
    assert ("GET", "/v1/calls/{call_id}/scorecard") in routes and ("GET", "/static") in routes
    missing, needless = [], []
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "x1", template)
        if (method, template) in NOT_AUDITED:
            if audited(method, path) is not None:
                needless.append((method, template))
        elif audited(method, path) is None:
            missing.append((method, template))
    assert missing == [], "routes that read or change data without an audit row"
    assert needless == []
    # Nothing listed here that the app no longer serves.
    assert NOT_AUDITED <= set(routes)


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
    assert [(r["role"], r["details"]) for r in reads] == [("qa", "status=404")]
    # Refusals are recorded apart: without a key nobody can be named, a refused key is.
    refused = [r for r in rows(api) if r["action"] in ("auth_failed", "forbidden")]
    prefix = api.keys["telephony"][:12]
    assert [(r["action"], r["role"], r["target_id"], r["details"]) for r in refused] == [
        ("auth_failed", None, call_id, "status=401 client=testclient key=none tried=read_scorecard"),
        ("forbidden", "telephony", call_id,
         f"status=403 client=testclient key={prefix} tried=read_scorecard")]


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
    got = api.client.get(f"/v1/audit?call_id={a}", headers=api.h("admin")).json()["entries"]
    assert [r["action"] for r in got] == ["read_call", "submit_call"]  # newest first
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.client.get("/v1/audit", params={"from": future}, headers=api.h("admin")).json() == {
        "entries": [], "page_size": 50, "next_cursor": None}
    assert api.client.get("/v1/audit?to=2000-01-01T00:00:00", headers=api.h("admin")).json()["entries"] == []
    supervisor = next(k for k in api.repo.list_keys() if k.role == "supervisor")
    by_key = api.client.get(f"/v1/audit?key_id={supervisor.id}", headers=api.h("admin")).json()["entries"]
    # The supervisor's refused look at the audit log is there too, with its status.
    assert [(r["action"], r["target_id"], r["details"].split(" client=")[0]) for r in by_key] == [
        ("forbidden", None, "status=403"), ("read_call", a, "status=200")]
    assert by_key[0]["details"].endswith(" tried=read_audit")
    assert [r["action"] for r in api.client.get("/v1/audit?action=forbidden", headers=api.h("admin")
                                                ).json()["entries"]] == ["forbidden"] * 3
    # Reading the audit log is itself recorded.
    assert rows(api)[-1]["action"] == "read_audit"


def test_audit_storage(database_url):
    repo = open_repository(database_url)
    try:
        t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        key = str(uuid.uuid4())
        repo.audit.record("read_scorecard", key_id=key, key_name="Ana", role="qa", target_kind="call",
                    target_id="c1", details="status=200", at=t0)
        repo.audit.record("review", key_id=key, key_name="Ana", role="qa", target_kind="call",
                    target_id="c1", details="x" * 500, at=t0 + timedelta(minutes=5))
        repo.audit.record("put_rules", target_kind="rubric", target_id="r/1",
                    at=t0 + timedelta(hours=1))
        by_call = repo.audit.entries(target_id="c1")
        assert [e.action for e in by_call] == ["review", "read_scorecard"]
        assert len(by_call[0].details or "") == store.DETAILS_MAX
        by_key = repo.audit.entries(key_id=key)
        assert [e.action for e in by_key] == ["review", "read_scorecard"]
        window = repo.audit.entries(since=t0 + timedelta(minutes=1),
                                     until=t0 + timedelta(minutes=30))
        assert [e.action for e in window] == ["review"]
        assert window[0].at == t0 + timedelta(minutes=5)
        assert repo.audit.entries(limit=1)[0].action == "put_rules"
        # Rows written at the same moment: the id orders them, and every page holds the next ones.
        for n in range(5):
            repo.audit.record("read_call", key_id=key, target_kind="call", target_id=f"c{n}",
                              at=t0 + timedelta(hours=2))
        every = repo.audit.entries()
        assert [(e.at, e.id) for e in every] == sorted(((e.at, e.id) for e in every), reverse=True)
        assert walk(lambda c: audit.audit_page(store=repo, cursor=c, page_size=2)) == every
        assert walk(lambda c: audit.audit_page(store=repo, key_id=key, cursor=c, page_size=2)) == [
            e for e in every if e.key_id == key]
        with pytest.raises(InputError, match="not one this listing gave"):
            audit.audit_page(store=repo, cursor=paging.encode("disputes", (t0, 1)))
    finally:
        repo.dispose()


def test_the_audit_route_answers_pages_newest_first(api):
    for _ in range(5):
        scored(api)
    until = datetime.now(UTC).isoformat()
    expected = sorted(rows(api), key=lambda r: (r["at"], r["id"]), reverse=True)
    walked = walk_api(api.client, "/v1/audit", "entries", headers=api.h("admin"), to=until)
    assert [r["id"] for r in walked] == [r["id"] for r in expected] and len(walked) == 5
    foreign = paging.encode("disputes", (datetime.now(UTC), 1))
    r = api.client.get("/v1/audit", params={"cursor": foreign}, headers=api.h("admin"))
    assert r.status_code == 422 and "not one this listing gave" in r.json()["detail"]
    r = api.client.get("/v1/audit", params={"limit": 10}, headers=api.h("admin"))
    assert r.status_code == 422 and "page_size" in r.json()["detail"]


def test_lists_exports_and_pages_are_audited(api):
    call_id = scored(api)
    supervisor = api.h("supervisor")
    for path in ("/v1/calls", "/v1/calls?format=csv", "/v1/calls?agent_id=agent-mira", "/v1/agents",
                 "/v1/agents/agent-mira/summary", "/v1/policy-currency", "/v1/review-queue", "/v1/rescores"):
        assert api.client.get(path, headers=supervisor).status_code == 200, path
    browser = TestClient(api.app)
    assert sign_in(browser, api.keys["supervisor"], next="/agents").status_code == 303
    for path in ("/agents", "/agents/agent-mira", "/calls", f"/calls/{call_id}"):
        assert browser.get(path).status_code == 200, path
    seen = [(r["action"], r["target_kind"], r["target_id"], r["key_name"], r["details"])
            for r in rows(api)[1:]]  # after the call's submit_call
    assert seen == [
        ("list_calls", "call", None, "supervisor key", "status=200"),
        ("export_calls", "call", None, "supervisor key", "status=200"),
        ("list_calls", "agent", "agent-mira", "supervisor key", "status=200"),
        ("list_agents", "agent", None, "supervisor key", "status=200"),
        ("read_scorecards", "agent", "agent-mira", "supervisor key", "status=200"),
        ("read_policy_currency", "agent", None, "supervisor key", "status=200"),
        ("read_review_queue", "call", None, "supervisor key", "status=200"),
        ("list_rescores", "rescore", None, "supervisor key", "status=200"),
        ("sign_in", "key", None, "supervisor key", "status=303"),
        ("list_agents", "agent", None, "supervisor key", "status=200"),
        ("read_scorecards", "agent", "agent-mira", "supervisor key", "status=200"),
        ("list_calls", "call", None, "supervisor key", "status=200"),
        ("read_call", "call", call_id, "supervisor key", "status=200"),
    ]


def test_a_read_by_the_id_written_another_way_is_found_by_the_usual_id(make_settings, redis_url, redis_conn,
                                                                         database_url):
    a = Api(make_settings(redis_url=redis_url, database_url=database_url), redis_conn)
    seed_rules(a.repo)
    call_id = scored(a)
    as_uuid = uuid.UUID(call_id)
    written = (as_uuid.hex, call_id.upper(), as_uuid.urn)
    for form in written:
        r = a.client.get(f"/v1/calls/{form}/scorecard", headers=a.h("supervisor"))
        assert r.status_code == 200, (form, r.text)
        assert r.json()["score"] == 25.0
    assert a.client.get(f"/v1/calls/{as_uuid.hex}", headers=a.h("supervisor")).json()["id"] == call_id
    found = a.client.get("/v1/audit", params={"call_id": call_id}, headers=a.h("admin")).json()["entries"]
    assert [r["action"] for r in found] == ["read_call"] + ["read_scorecard"] * 3 + ["submit_call"]
    assert {r["target_id"] for r in found} == {call_id}
    # A search by the id in another form finds the same rows.
    again = a.client.get("/v1/audit", params={"call_id": as_uuid.hex}, headers=a.h("admin")).json()["entries"]
    assert again == found
    a.repo.dispose()


def test_failed_authentication_names_the_key_prefix_and_the_client_address(api):
    call_id = scored(api)
    client = TestClient(api.app, client=("203.0.113.9", 40000))
    guess = "qak_GuEsSeD1" + "h" * 35
    assert client.get(f"/v1/calls/{call_id}/scorecard",
                      headers={"Authorization": f"Bearer {guess}"}).status_code == 401
    assert client.get("/v1/rubrics").status_code == 401
    telephony = next(k for k in api.repo.list_keys() if k.role == "telephony")
    api.repo.revoke_key(telephony.id)
    assert client.get("/v1/rubrics", headers=api.h("telephony")).status_code == 401
    pasted = "qak_PaStEd12" + "p" * 35
    assert sign_in(client, pasted).status_code == 401
    assert client.post("/v1/webhooks/telephony", json={"external_call_id": "x"}).status_code == 401

    failed = api.client.get("/v1/audit?action=auth_failed", headers=api.h("admin")).json()["entries"][::-1]
    assert [(r["key_name"], r["target_kind"], r["target_id"], r["details"]) for r in failed] == [
        (None, "call", call_id, "status=401 client=203.0.113.9 key=qak_GuEsSeD1 tried=read_scorecard"),
        (None, None, None, "status=401 client=203.0.113.9 key=none tried=GET /v1/rubrics"),
        # A revoked key is named: someone still holds it.
        ("telephony key", None, None,
         f"status=401 client=203.0.113.9 key={api.keys['telephony'][:12]} revoked tried=GET /v1/rubrics"),
        (None, "key", None, "status=401 client=203.0.113.9 key=qak_PaStEd12 tried=sign_in"),
        (None, "call", None, "status=401 client=203.0.113.9 key=none tried=submit_call"),
    ]
    dump = repr(rows(api))
    assert guess not in dump and pasted not in dump and api.keys["telephony"] not in dump
    assert guess[:13] not in dump  # not one character past the prefix


def test_a_flood_of_failures_writes_a_bounded_number_of_rows(make_settings, redis_url, redis_conn):
    a = Api(make_settings(redis_url=redis_url, failed_auth_per_minute=5), redis_conn)
    fresh_window()
    attacker = TestClient(a.app, client=("198.51.100.7", 1))
    statuses = [attacker.get("/v1/agents", headers={"Authorization": f"Bearer qak_{n:08d}" + "x" * 35}
                             ).status_code for n in range(40)]
    assert statuses == [401] * 5 + [429] * 35
    failed = a.repo.audit.entries(action="auth_failed")
    assert len(failed) == 5
    assert "refused=" in failed[0].details and all("refused=" not in e.details for e in failed[1:])
    # Someone else is not held up by it.
    assert TestClient(a.app, client=("198.51.100.8", 1)).get("/v1/agents", headers=a.h("supervisor")
                                                               ).status_code == 200
    a.repo.dispose()


def test_a_cookie_kept_after_sign_out_names_nobody(api):
    call_id = scored(api)
    browser = TestClient(api.app)
    assert sign_in(browser, api.keys["supervisor"], next="/agents").status_code == 303
    captured = browser.cookies[COOKIE_NAME]
    assert sign_out(browser).status_code == 303
    before = len(rows(api))
    replay = TestClient(api.app, cookies={COOKIE_NAME: captured})
    assert replay.get(f"/calls/{call_id}", follow_redirects=False).status_code == 303  # back to sign-in
    # The page refused the cookie, so no row may say its key read the call.
    assert [r for r in rows(api)[before:] if r["action"] == "read_call"] == []
