"""API conventions over every route: answers name a call by both ids, a call is found by either id,
an unknown query parameter is refused, and every error has the one format.

Walks the app's own routes and OpenAPI description, so a new route that forgets a convention fails
here. The site is the two-team site of tests/test_teams.py (SQLite).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa_service.api.queryparams import is_api
from qa_service.api.schemas import Error
from qa_service.app import create_app
from qa_service.auth import create_key
from tests.test_audit import app_routes
from tests.test_teams import Site

# The scorecard document keeps format v1 (DESIGN.md), whose `call_id` is the id its sender gave the call
# (or the service's, when it gave none): the files `qa-service process` writes and the API serves are the
# same document. The service's id comes with it in the X-Call-Id header and both ids are in GET
# /v1/calls/{id}; the id in the document finds the call (GET /v1/calls/{that id}).
DOCUMENT_SCHEMAS = {"ScorecardDoc", "ReviewedScorecardDoc"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("conventions"))
    yield s
    s.repo.dispose()


def _objects_with_call_id(node: Any, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        if "call_id" in node:
            found.append(node)
        for value in node.values():
            _objects_with_call_id(value, found)
    elif isinstance(node, list):
        for value in node:
            _objects_with_call_id(value, found)
    return found


def _fill(site: Site, template: str) -> str:
    values = {"call_id": site.ids["a1"], "agent_id": "agent-a", "team": "team-alpha", "vendor": "vendor-one",
              "pack_id": "fees", "version": "2026-10", "session_id": site.mixed_session,
              "run_id": "00000000-0000-4000-8000-000000000000",
              "key_id": "00000000-0000-4000-8000-000000000000",
              "rubric_id": "intake", "dispute_id": "1"}
    return re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], template)


def _api_gets(site: Site) -> list[str]:
    return sorted({path for method, path in app_routes(site.app) if method == "GET" and is_api(path)})


# -- both ids ----------------------------------------------------------------------------------------

def test_every_response_schema_with_a_call_id_has_an_external_id(site):
    spec = site.app.openapi()
    schemas = spec["components"]["schemas"]
    missing = []
    for name, schema in schemas.items():
        props = schema.get("properties") or {}
        if "call_id" in props and "external_id" not in props and name not in DOCUMENT_SCHEMAS:
            # Request bodies name calls to act on (one id is enough there); answers name both.
            if not name.endswith("In"):
                missing.append(name)
    assert missing == []
    # The check reads real schemas: the listings' and the impact report's lines are among them.
    assert {"CallItem", "ScorecardSummary", "FlippedCall", "CallRef", "OutdatedMention"} <= {
        n for n, s in schemas.items() if "external_id" in (s.get("properties") or {})}


def test_every_answer_that_names_a_call_names_it_by_both_ids(site):
    api = site.api("admin")
    lacking, checked = [], {}
    for template in _api_gets(site):
        r = api.get(_fill(site, template))
        if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
            continue
        body = r.json()
        if template.endswith(("/scorecard", "/scorecard/reviewed")):
            # The scorecard document itself: DOCUMENT_SCHEMAS; what it holds counts.
            body = list(body.values())
        objects = _objects_with_call_id(body, [])
        checked[template] = len(objects)
        lacking += [(template, sorted(o)) for o in objects if "external_id" not in o]
    assert lacking == []
    # The walk reached the routes that name calls (so a route that stops answering fails here too).
    named = {t for t, n in checked.items() if n}
    assert {"/v1/calls", "/v1/agents/{agent_id}/summary", "/v1/agents/{agent_id}/scorecards",
            "/v1/review-queue", "/v1/disputes", "/v1/calls/{call_id}/disputes", "/v1/calls/{call_id}/reviews",
            "/v1/calibrations/{session_id}", "/v1/teams/{team}/scorecards"} <= named
    queue = api.get("/v1/review-queue").json()["calls"]
    sent_as = {call_id: f"ext-{k}" for k, call_id in site.ids.items()}
    assert queue and all(c["external_id"] == sent_as[c["call_id"]] for c in queue)


def test_the_csv_exports_carry_both_ids(site):
    api = site.api("admin")
    for url in ("/v1/calls?format=csv", "/v1/agents/agent-a/scorecards.csv",
                "/v1/teams/team-alpha/scorecards.csv"):
        rows = list(csv.DictReader(io.StringIO(api.get(url).text)))
        assert rows and all(r["call_id"] and r["external_id"].startswith("ext-") for r in rows), url


def test_the_scorecard_names_the_services_id_in_a_header(site):
    api = site.api("admin")
    for asked in (site.ids["a1"], "ext-a1"):
        r = api.get(f"/v1/calls/{asked}/scorecard")
        assert r.status_code == 200 and r.headers["X-Call-Id"] == site.ids["a1"]


# -- lookup by either id -------------------------------------------------------------------------------

PER_CALL = ["/v1/calls/{}", "/v1/calls/{}/scorecard", "/v1/calls/{}/scorecard/reviewed",
            "/v1/calls/{}/reviews", "/v1/calls/{}/disputes"]


def test_a_call_is_found_by_the_id_its_sender_gave_it(site):
    api = site.api("supervisor")
    call = api.get("/v1/calls/ext-a1").json()
    assert call["id"] == site.ids["a1"] and call["external_id"] == "ext-a1"
    for template in PER_CALL:
        by_ours, by_theirs = (api.get(template.format(i)) for i in (site.ids["a1"], "ext-a1"))
        assert by_theirs.status_code == by_ours.status_code == 200, template
        assert by_theirs.content == by_ours.content, template
    assert api.get("/v1/calls/ext-a2/audio").status_code == 200
    assert api.get("/v1/calls/ext-nobody").json() == {"detail": "no call with id 'ext-nobody'"}


def test_the_call_list_filters_by_external_id(site):
    api = site.api("supervisor")
    page = api.get("/v1/calls", params={"external_id": "ext-b1"}).json()
    assert [(c["call_id"], c["external_id"]) for c in page["items"]] == [(site.ids["b1"], "ext-b1")]
    assert api.get("/v1/calls", params={"external_id": "ext-nobody"}).json()["items"] == []
    rows = list(csv.DictReader(io.StringIO(api.get("/v1/calls?format=csv&external_id=ext-a1").text)))
    assert [r["external_id"] for r in rows] == ["ext-a1"]


def test_a_scoped_key_gets_404_for_another_teams_call_by_either_id(site):
    alpha = site.api("alpha")
    assert alpha.get("/v1/calls/ext-a1").status_code == 200
    for template in [*PER_CALL, "/v1/calls/{}/audio"]:
        r = alpha.get(template.format("ext-b1"))
        assert r.status_code == 404, template
        assert site.ids["b1"] not in r.text  # the service's id of another team's call is not revealed
    assert alpha.get("/v1/calls", params={"external_id": "ext-b1"}).json()["items"] == []


# -- unknown query parameters --------------------------------------------------------------------------

def test_every_api_route_refuses_an_unknown_query_parameter(site):
    api = site.api("admin")
    answered = []
    for method, template in app_routes(site.app):
        if not is_api(template):
            continue
        r = api.request(method, _fill(site, template) + "?agentid=agent-a")
        answered.append((method, template, r.status_code))
        assert r.status_code == 422, (method, template, r.status_code)
        body = Error.model_validate(r.json())
        assert body.errors and body.errors[0].field == "agentid", (method, template)
        assert "unknown query parameter" in body.detail
    assert len(answered) > 40


def test_the_refusal_lists_what_the_route_accepts_and_known_parameters_pass(site):
    api = site.api("admin")
    r = api.get("/v1/calls", params={"agent": "agent-a", "page": 1})
    assert r.status_code == 422
    message = r.json()["errors"][0]["message"]
    assert "agent_id" in message and "external_id" in message and "from" in message
    ok = api.get("/v1/calls", params={"agent_id": "agent-a", "from": "2026-01-01", "page_size": 5})
    assert ok.status_code == 200
    assert api.get("/v1/review-queue", params={"from": "2026-01-01", "page_size": 3}).status_code == 200
    # The web pages keep ignoring parameters browsers and links add.
    assert site.web("supervisor").get("/calls?utm_source=mail").status_code == 200


# -- one error format ----------------------------------------------------------------------------------

def _error_of(r) -> Error:
    assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.text[:200])
    return Error.model_validate(r.json())


def test_every_error_has_the_one_format(site, tmp_path):
    api, agent = site.api("admin"), TestClient(site.app)
    cases = {
        401: agent.get("/v1/calls"),
        403: site.api("supervisor").get("/v1/keys"),
        404: api.get("/v1/calls/ext-nobody"),
        405: api.put("/v1/calls"),
        409: api.post(f"/v1/calls/{site.ids['a1']}/retry"),
        413: api.post("/v1/rubrics", content=b"x" * (2 * 1024 * 1024)),
        422: api.get("/v1/calls", params={"from": "yesterday"}),
        503: api.post("/v1/webhooks/telephony", json={}),
    }
    for status, r in cases.items():
        assert r.status_code == status, (status, r.status_code, r.text[:200])
        assert _error_of(r).detail
    # An unknown path answers in the format too, and a Host the service does not answer to.
    assert _error_of(api.get("/v1/no-such-thing")).detail
    bad_host = TestClient(site.app, base_url="http://evil.example")
    r = bad_host.get("/v1/calls")
    assert r.status_code == 400 and _error_of(r).detail
    # A not-yet-scored call's scorecard: 404 in the format, with the call's status.
    queued = api.get(f"/v1/calls/{site.ids['queued']}/scorecard")
    assert queued.status_code == 404 and _error_of(queued).status == "queued"
    # A dispute id past the database's integers is a bad parameter, not a server error.
    huge = api.post("/v1/disputes/9223372036854775808/resolution", json={"outcome": "upheld", "reason": "x"})
    assert huge.status_code == 422 and _error_of(huge).errors[0].field == "dispute_id"
    # An import with bad lines names each line.
    refused = api.post("/v1/memberships", content="agent_id,team\n", headers={"Content-Type": "text/csv"})
    assert refused.status_code == 422 and _error_of(refused).errors


def test_rate_limits_and_unexpected_failures_answer_in_the_format(make_settings):
    app = create_app(make_settings(rate_limit_per_minute=2))
    key = create_key(app.state.repo, "admin", "ops")
    api = TestClient(app, headers={"Authorization": f"Bearer {key}"}, raise_server_exceptions=False)
    answers = [api.get("/v1/keys") for _ in range(4)]
    limited = next(r for r in answers if r.status_code == 429)
    assert _error_of(limited).detail and limited.headers["Retry-After"]

    app = create_app(make_settings())
    key = create_key(app.state.repo, "admin", "ops")
    api = TestClient(app, headers={"Authorization": f"Bearer {key}"}, raise_server_exceptions=False)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the disk is on fire")

    app.state.repo.key_page = broken
    r = api.get("/v1/keys")
    assert r.status_code == 500 and "fire" not in r.text and _error_of(r).detail


def test_the_openapi_description_names_the_one_error_format(site):
    spec = site.app.openapi()
    assert "HTTPValidationError" not in str(spec)
    operations = [(path, op) for path, ops in spec["paths"].items() if is_api(path) for op in ops.values()]
    assert len(operations) > 40
    for path, op in operations:
        schema = op["responses"]["422"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, path
    assert set(spec["components"]["schemas"]["Error"]["properties"]) == {"detail", "errors", "status"}
