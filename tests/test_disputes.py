"""Agents' keys, acknowledgements and disputes: an agent sees only their own calls, disputes a violation,
QA overturns it, and the reviewed score, the aggregates and the overturn rates change while the history
is kept (through the services on SQLite and PostgreSQL, through the API and the pages on SQLite).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient

from qa_service.auth import hash_key, issue_key
from qa_service.cli import main
from qa_service.errors import Forbidden, InputError
from qa_service.services import disputes, reviews, teams
from qa_service.services.reviews import reviewed_card
from qa_service.storage import open_repository, paging
from qa_service.storage.memory import MemoryRepository
from qa_service.storage.repository import AlreadyResolved, Dispute, DisputeOpen, Scope
from qa_service.storage.views import Filters
from tests.paging_support import walk, walk_api
from tests.test_teams import SCOPED, START, TEAM_A, TEAM_B, VENDOR_A, VENDOR_B, Site, _read, _urls, m
from tests.test_views import seed_calls
from tests.test_web import form_token, sign_in

WINDOW = 7.0
T = TypeVar("T")


# -- keys ------------------------------------------------------------------------------------------

def test_an_agent_key_is_bound_to_its_agent_and_nothing_else():
    assert teams.make_scope("agent", agent=" agent-a ") == Scope(agent="agent-a")
    with pytest.raises(InputError, match="needs the agent id"):
        teams.make_scope("agent")
    with pytest.raises(InputError, match="only agent keys are bound"):
        teams.make_scope("supervisor", agent="agent-a")
    with pytest.raises(InputError, match="takes no teams"):
        teams.make_scope("agent", teams=["alpha"], agent="agent-a")
    assert Scope(agent="agent-a").describe() == "agent=agent-a"


def test_agent_keys_through_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("QA_STORAGE_DIR", str(tmp_path / "storage"))
    assert main(["keys", "create", "--role", "agent", "--agent", "agent-7", "--name", "Ana"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["keys", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("agent=agent-7")
    assert main(["keys", "create", "--role", "agent", "--name", "nobody"]) != 0
    assert "needs the agent id" in capsys.readouterr().err
    repo = open_repository(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        assert repo.key_by_hash(hash_key(key)).scope == Scope(agent="agent-7")
    finally:
        repo.dispose()


# -- the flow, on both databases -------------------------------------------------------------------

def test_dispute_overturn_changes_the_score_and_the_aggregates_and_keeps_the_history(database_url):
    repo = open_repository(database_url)
    try:
        ids = seed_calls(repo)
        agent = issue_key(repo, "agent", "Ana", Scope(agent="agent-a"))[0]
        qa = issue_key(repo, "qa", "Quinn")[0]
        views = repo.views
        before = views.totals(Filters(agent_id="agent-a"))
        assert (before.mean_score, before.pass_rate) == (75.0, 0.5)  # 100, 70 (auto-fail), 40, 90

        dispute = disputes.raise_dispute(store=repo, key=agent, call_id=ids["a2"], target="violation",
                                         target_id="guarantee", reason="I said nobody can guarantee it",
                                         window_days=WINDOW)
        assert dispute.status == "open" and dispute.agent_id == "agent-a" and dispute.rubric_id == "intake"
        queued = {c["call_id"]: c for c in reviews.review_queue(store=repo, key=qa, share=0.0).items}
        assert queued[ids["a2"]]["why"] == "dispute" and queued[ids["a2"]]["disputes"] == 1

        resolved, card = disputes.resolve_dispute(store=repo, key=qa, dispute_id=dispute.id,
                                                  outcome="overturned", reason="Negated: it is allowed")
        assert resolved.status == "overturned" and resolved.review_id is not None
        assert card is not None and card["review"]["reviewed_score"] == 100.0
        assert card["review"]["reviewed_passed"] is True and card["review"]["reviewed_auto_fail"] is False
        # The automatic verdict is kept beside the reviewed one.
        stored = repo.get_scorecard(ids["a2"])
        assert (stored.score, stored.passed) == (70.0, False)
        assert reviewed_card(store=repo, stored=stored)["review"]["reviewed_score"] == 100.0
        after = views.totals(Filters(agent_id="agent-a"))
        assert (after.mean_score, after.pass_rate, after.auto_fail_count) == (82.5, 0.75, 0)
        # The resolved dispute leaves the queue (the call was reviewed by the overturn).
        queued = {c["call_id"] for c in reviews.review_queue(store=repo, key=qa, share=0.0).items}
        assert ids["a2"] not in queued

        rates = views.overturn_rates(Filters(agent_id="agent-a"))
        assert [(r.target, r.id, r.overturned, r.resolved, r.overturn_rate) for r in rates] == [
            ("violation", "guarantee", 1, 1, 1.0)]
        # History: the dispute, its resolution, who and why; the review names the reviewer.
        acks, kept = disputes.call_disputes(store=repo, key=qa, call_id=ids["a2"])
        assert acks == []
        assert [(d.status, d.reason, d.resolution_reason, d.resolved_by_name) for d in kept] == [
            ("overturned", "I said nobody can guarantee it", "Negated: it is allowed", "Quinn")]
        assert [(r.action, r.reviewer_name) for r in repo.reviews.for_call(ids["a2"])] == [
            ("dismiss", "Quinn")]
        with pytest.raises(AlreadyResolved):
            disputes.resolve_dispute(store=repo, key=qa, dispute_id=dispute.id, outcome="upheld", reason="x")
        # A dismissed violation stands for the agent already: nothing to dispute.
        with pytest.raises(disputes.NotDisputable, match="dismissed"):
            disputes.raise_dispute(store=repo, key=agent, call_id=ids["a2"], target="violation",
                                   target_id="guarantee", reason="again", window_days=WINDOW)

        # An upheld dispute changes nothing but is recorded, and counts in the rates.
        other = disputes.raise_dispute(store=repo, key=agent, call_id=ids["a3"], target="criterion",
                                       target_id="identity", reason="I asked for the date of birth",
                                       window_days=WINDOW)
        upheld, card = disputes.resolve_dispute(store=repo, key=qa, dispute_id=other.id, outcome="upheld",
                                                reason="Not asked on this call")
        assert card is None and upheld.status == "upheld" and upheld.review_id is None
        assert repo.reviews.for_call(ids["a3"]) == []
        assert views.totals(Filters(agent_id="agent-a")) == after
        rates = {r.id: r for r in views.overturn_rates(Filters())}
        assert (rates["identity"].upheld, rates["identity"].overturn_rate) == (1, 0.0)
        assert disputes.list_disputes(store=repo, key=agent) == disputes.list_disputes(
            store=repo, key=qa, agent_id="agent-a")
        assert len(disputes.list_disputes(store=repo, key=qa, status="upheld").items) == 1

        # Acknowledging is once per version; the second time returns the first.
        first, new = disputes.acknowledge(store=repo, key=agent, call_id=ids["a2"])
        again, new_again = disputes.acknowledge(store=repo, key=agent, call_id=ids["a2"])
        assert new and not new_again and again.created_at == first.created_at
    finally:
        repo.dispose()


def test_the_window_one_open_dispute_and_what_cannot_be_disputed(database_url):
    repo = open_repository(database_url)
    try:
        ids = seed_calls(repo)
        agent = issue_key(repo, "agent", "Ana", Scope(agent="agent-a"))[0]
        stored = repo.get_scorecard(ids["a3"])

        def dispute(target="criterion", target_id="next_steps", **kw):
            return disputes.raise_dispute(store=repo, key=agent, call_id=ids["a3"], target=target,
                                          target_id=target_id, reason="it was said", window_days=WINDOW, **kw)

        late = stored.created_at + timedelta(days=WINDOW, seconds=1)
        with pytest.raises(disputes.WindowClosed, match="QA_DISPUTE_WINDOW_DAYS"):
            dispute(now=late)
        assert repo.disputes.for_call(ids["a3"]) == []
        dispute(now=late - timedelta(seconds=2))  # just inside
        with pytest.raises(DisputeOpen, match="already has an open dispute"):
            dispute()
        with pytest.raises(disputes.NotDisputable, match="passed"):
            dispute(target_id="greeting")
        with pytest.raises(disputes.NotDisputable, match="did not apply"):
            disputes.raise_dispute(store=repo, key=agent, call_id=ids["a2"], target="criterion",
                                   target_id="disclosure", reason="x", window_days=WINDOW)
        with pytest.raises(disputes.BadDispute, match="reason"):
            disputes.raise_dispute(store=repo, key=agent, call_id=ids["a3"], target="criterion",
                                   target_id="identity", reason="  ", window_days=WINDOW)
        with pytest.raises(Forbidden):  # only the agent's own key disputes
            disputes.raise_dispute(store=repo, key=issue_key(repo, "qa", "q")[0], call_id=ids["a3"],
                                   target="criterion", target_id="identity", reason="x", window_days=WINDOW)
        assert len(repo.disputes.for_call(ids["a3"])) == 1
    finally:
        repo.dispose()


# -- pages of the listing -------------------------------------------------------------------------

def _many_disputes(repo) -> list[Dispute]:
    """Three disputes on each of six calls of two teams, raised in threes at the same moment (the id
    orders those), agent-a's and agent-b's interleaved."""
    ids = seed_calls(repo)
    teams.put_memberships(store=repo, items=[m("agent-a", TEAM_A, VENDOR_A, START),
                                             m("agent-b", TEAM_B, VENDOR_B, START)])
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    made = []
    for n in range(3):
        for i, (call, agent) in enumerate((("a1", "agent-a"), ("b1", "agent-b"), ("a2", "agent-a"),
                                           ("b2", "agent-b"), ("a3", "agent-a"), ("a4", "agent-a"))):
            made.append(repo.disputes.add(Dispute(
                call_id=ids[call], scorecard_version=1, rubric_id="intake", agent_id=agent,
                call_date=repo.get_call(ids[call]).call_date, target_kind="criterion", target_id=f"c{n}",
                reason="x", raised_by_key_id="k", raised_by_name=agent,
                created_at=t0 + timedelta(seconds=(6 * n + i) // 3))))
    return made


def _pages_of_disputes(repo) -> None:
    made = _many_disputes(repo)
    qa = issue_key(repo, "qa", "Quinn")[0]
    agent = issue_key(repo, "agent", "Ana", Scope(agent="agent-a"))[0]
    alpha = issue_key(repo, "supervisor", "alpha lead", Scope(teams=(TEAM_A,)))[0]
    bravo = issue_key(repo, "supervisor", "bravo lead", Scope(vendors=(VENDOR_B,)))[0]

    def pages(key, **kw):
        return [d.id for d in walk(lambda c: disputes.list_disputes(store=repo, key=key, cursor=c,
                                                                    page_size=2, **kw))]

    assert pages(qa) == [d.id for d in made]  # oldest first, the id breaking ties
    own = [d.id for d in made if d.agent_id == "agent-a"]
    assert pages(agent) == pages(alpha) == own
    assert pages(bravo) == [d.id for d in made if d.agent_id == "agent-b"]
    assert pages(alpha, agent_id="agent-b") == []
    disputes.resolve_dispute(store=repo, key=qa, dispute_id=own[0], outcome="upheld", reason="stands")
    assert pages(agent, status="open") == own[1:]
    with pytest.raises(InputError, match="not one this listing gave"):
        disputes.list_disputes(store=repo, key=qa, cursor=paging.encode("audit", (made[0].created_at, 1)))


def test_dispute_pages_hold_every_dispute_once_and_only_the_keys_scope(database_url):
    repo = open_repository(database_url)
    try:
        _pages_of_disputes(repo)
    finally:
        repo.dispose()


def test_dispute_pages_in_memory_match_the_database():
    _pages_of_disputes(MemoryRepository())


# -- through the API and the pages -----------------------------------------------------------------

class AgentSite(Site):
    """The two-team site with keys for agent-a and agent-b."""

    def __init__(self, folder):
        super().__init__(folder)
        # The matrix asks hundreds of refused questions in a few seconds: no rate limits here.
        self.settings.rate_limit_per_minute = self.settings.failed_auth_per_minute = 0
        self.keys["agent-a"] = issue_key(self.repo, "agent", "Ana", Scope(agent="agent-a"))[1]
        self.keys["agent-b"] = issue_key(self.repo, "agent", "Ben", Scope(agent="agent-b"))[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = AgentSite(tmp_path_factory.mktemp("disputes"))
    yield s
    s.repo.dispose()


def test_an_agent_key_reads_only_its_own_calls_through_the_api(site):
    api, ids = site.api("agent-a"), site.ids
    assert api.get(f"/v1/calls/{ids['a2']}").status_code == 200
    assert api.get(f"/v1/calls/{ids['a2']}/scorecard").json()["agent_id"] == "agent-a"
    assert api.get(f"/v1/calls/{ids['a2']}/scorecard/reviewed").status_code == 200
    for other in ("b1", "b2", "queued"):
        for suffix in ("", "/scorecard", "/scorecard/reviewed", "/reviews", "/audio", "/disputes"):
            assert api.get(f"/v1/calls/{ids[other]}{suffix}").status_code == 404, (other, suffix)
    listed = api.get("/v1/calls", params={"page_size": 500}).json()["items"]
    assert {c["agent_id"] for c in listed} == {"agent-a"} and len(listed) == 5
    assert api.get("/v1/calls", params={"agent_id": "agent-b"}).json()["items"] == []
    assert api.get("/v1/agents/agent-a/summary").json()["aggregate"]["count"] == 4
    assert api.get("/v1/agents/agent-a/scorecards").status_code == 200
    for path in ("/v1/agents/agent-b/summary", "/v1/agents/agent-b/scorecards",
                 "/v1/agents/agent-b/scorecards.csv", "/v1/agents/nobody/summary", "/v1/agents",
                 "/v1/review-queue", "/v1/rescores", "/v1/keys", "/v1/audit", "/v1/teams", "/v1/vendors",
                 "/v1/memberships", "/v1/certifications", "/v1/policy-currency", "/v1/overturn-rates",
                 "/v1/teams/team-alpha/scorecards"):
        assert api.get(path).status_code == 403, path
    body = {"target": "verdict", "id": "verdict", "action": "confirm", "reason": "mine"}
    assert api.post(f"/v1/calls/{ids['a2']}/reviews", json=body).status_code == 403
    assert api.post("/v1/rescores", json={"rubric_id": "intake", "rubric_version": "1"}).status_code == 403
    # A supervisor cannot act as the agent.
    r = site.api("supervisor").post(f"/v1/calls/{ids['a2']}/acknowledgement")
    assert r.status_code == 403


def test_the_agent_matrix_nothing_of_another_agent(site):
    """Every route that reads call data, asked by agent-a's key for agent-b's calls, agent and team:
    refused or empty, never agent-b's data."""
    agent = {"api": site.api("agent-a"), "web": site.web("agent-a")}
    forbidden = site.team_b()
    leaks = []
    for template in sorted(SCOPED):
        for url in _urls(site, template, "b"):
            status, body = _read(site, agent, url)
            assert status < 500, url
            shown = {x for x in forbidden if x in body and x not in url}
            if shown:
                leaks.append((url, status, sorted(shown)))
            if "{call_id}" in template and status != 404:
                leaks.append((url, status, "another agent's call not answered as unknown"))
            if "{agent_id}" in template and status != 403:
                leaks.append((url, status, "another agent's listing not refused"))
    assert leaks == []


def test_dispute_overturn_through_the_api(site):
    ids, agent, qa = site.ids, site.api("agent-a"), site.api("qa")
    a3 = ids["a3"]
    before = agent.get("/v1/agents/agent-a/summary").json()["aggregate"]
    r = agent.post(f"/v1/calls/{a3}/acknowledgement")
    assert r.status_code == 201 and r.json()["scorecard_version"] == 2
    assert agent.post(f"/v1/calls/{a3}/acknowledgement").status_code == 200
    assert agent.post(f"/v1/calls/{ids['b1']}/acknowledgement").status_code == 404

    r = agent.post(f"/v1/calls/{a3}/disputes", json={"target": "violation", "id": "fee-amount",
                                                     "reason": "That was the old fee and I corrected it"})
    assert r.status_code == 201, r.text
    dispute = r.json()
    again = agent.post(f"/v1/calls/{a3}/disputes", json={"target": "violation", "id": "fee-amount",
                                                         "reason": "twice"})
    assert again.status_code == 409 and "open dispute" in again.json()["detail"]
    assert agent.post(f"/v1/calls/{a3}/disputes", json={"target": "verdict", "id": "verdict",
                                                        "reason": "x"}).status_code == 422
    assert agent.post(f"/v1/calls/{a3}/disputes", json={"target": "violation", "id": "nope",
                                                        "reason": "x"}).status_code == 404
    queue = qa.get("/v1/review-queue").json()["calls"]
    assert any(c["call_id"] == a3 and c["why"] == "dispute" for c in queue)
    assert agent.post(f"/v1/disputes/{dispute['id']}/resolution",
                      json={"outcome": "overturned", "reason": "mine"}).status_code == 403
    assert site.api("supervisor").post(f"/v1/disputes/{dispute['id']}/resolution",
                                       json={"outcome": "overturned", "reason": "x"}).status_code == 403

    r = qa.post(f"/v1/disputes/{dispute['id']}/resolution",
                json={"outcome": "overturned", "reason": "The agent corrected the fee at once"})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["reviewed_score"] == 40.0  # an outdated fee here costs no points: only the finding goes
    assert r.json()["dispute"]["resolution"]["outcome"] == "overturned"
    assert qa.post(f"/v1/disputes/{dispute['id']}/resolution",
                   json={"outcome": "upheld", "reason": "x"}).status_code == 409

    after = agent.get("/v1/agents/agent-a/summary").json()["aggregate"]
    assert after["violations"]["outdated_policy"] == before["violations"]["outdated_policy"] - 1
    assert [(o["id"], o["overturned"], o["disputes"], o["overturn_rate"]) for o in after["overturns"]
            if o["id"] == "fee-amount"] == [("fee-amount", 1, 1, 1.0)]
    rates = qa.get("/v1/overturn-rates").json()["rules"]
    assert {"target": "violation", "id": "fee-amount", "overturned": 1, "upheld": 0, "open": 0,
            "disputes": 1, "overturn_rate": 1.0, "rubric_id": "intake"} in rates
    history = agent.get(f"/v1/calls/{a3}/disputes").json()
    assert [a["scorecard_version"] for a in history["acknowledgements"]] == [2]
    # The site's own open dispute of a3 (identity) and this one, oldest first.
    assert [(d["target_id"], d["status"]) for d in history["disputes"]] == [("identity", "open"),
                                                                            ("fee-amount", "overturned")]
    kept = history["disputes"][1]
    assert kept["reason"] == "That was the old fee and I corrected it" and kept["status"] == "overturned"
    assert kept["resolution"]["by"]["name"] == "qa person" and kept["resolution"]["at"]
    assert site.api("supervisor").get(f"/v1/calls/{a3}/disputes").json() == history
    mine = agent.get("/v1/disputes").json()["disputes"]
    assert {d["agent_id"] for d in mine} == {"agent-a"} and any(d["id"] == dispute["id"] for d in mine)


def test_dispute_overturn_through_the_pages(site):
    ids = site.ids
    a2 = ids["a2"]
    web = TestClient(site.app, base_url="http://testserver")
    r = sign_in(web, site.keys["agent-a"])
    assert r.status_code == 303 and r.headers["location"] == "/agents/agent-a"
    own = web.get("/agents/agent-a")
    assert own.status_code == 200 and "My scorecards" in own.text and 'href="/teams"' not in own.text
    for path in ("/agents", "/agents/agent-b", "/teams", "/vendors", "/certifications", "/rescores",
                 "/disputes", "/agents/agent-b/scorecards.csv"):
        assert web.get(path, follow_redirects=False).status_code == 403, path
    assert web.get(f"/calls/{ids['b1']}").status_code == 404
    assert "ext-b1" not in web.get("/calls").text

    page = web.get(f"/calls/{a2}")
    assert 'id="acknowledge-form"' in page.text and 'id="dispute-form"' in page.text
    assert 'value="violation:guarantee"' in page.text
    token = form_token(page.text)
    refused = web.post(f"/calls/{a2}/disputes", data={"pick": "violation:guarantee", "reason": "x"},
                       follow_redirects=False)
    assert refused.status_code == 403  # no form token
    assert web.post(f"/calls/{a2}/acknowledgement", data={"csrf": token},
                    follow_redirects=False).status_code == 303
    r = web.post(f"/calls/{a2}/disputes", data={"csrf": token, "pick": "violation:guarantee",
                                                "reason": "I said nobody can guarantee approval"},
                 follow_redirects=False)
    assert r.status_code == 303, r.text
    page = web.get(f"/calls/{a2}")
    assert "acknowledged by Ana" in page.text and 'class="badge dispute-status open"' in page.text
    assert 'value="violation:guarantee"' not in page.text  # open already
    assert "resolution" not in page.text.split('id="disputes"')[1].split("</section>")[0]

    qa = site.web("qa")
    listing = qa.get("/disputes")
    assert listing.status_code == 200 and "I said nobody can guarantee approval" in listing.text
    call = qa.get(f"/calls/{a2}")
    assert "acknowledged by Ana" in call.text and "/resolution" in call.text
    dispute_id = re.search(r'action="/disputes/(\d+)/resolution"', call.text).group(1)
    r = qa.post(f"/disputes/{dispute_id}/resolution",
                data={"csrf": form_token(call.text), "outcome": "overturned", "reason": "Negated; allowed"},
                follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/calls/{a2}#disputes"
    call = qa.get(f"/calls/{a2}")
    # The page shows the verdict after review, the automatic one beside it.
    assert re.search(r'class="verdict-box pass" id="shown-verdict" data-score="100"', call.text)
    assert 'id="reviewed-verdict">after review · automatic:' in call.text
    assert "Overturned by qa person" in call.text and "Negated; allowed" in call.text
    # A dispute id past the database's integers is no dispute, on the page as in the API.
    huge = qa.post(f"/disputes/{2**70}/resolution",
                   data={"csrf": form_token(call.text), "outcome": "upheld", "reason": "x"},
                   follow_redirects=False)
    assert huge.status_code == 404, huge.text
    rates = qa.get("/disputes").text.split('id="overturn-rates"')[1]
    row = re.search(r'<tr data-rule="violation-guarantee">(.*?)</tr>', rates, re.S)
    assert row and "1/1 (100%)" in row.group(1)

    # The agent sees the outcome and the history on their own page and on the call page.
    own = web.get("/agents/agent-a").text
    assert "Overturned by qa person" in own and "I said nobody can guarantee approval" in own
    assert re.search(r'<tr data-rule="violation-guarantee">.*?1/1 \(100%\)', own, re.S)
    assert "Negated; allowed" in web.get(f"/calls/{a2}").text


def test_a_closed_window_is_shown_and_refused_on_the_page(site, monkeypatch):
    web = site.web("agent-a")
    monkeypatch.setattr(site.settings, "dispute_window_days", 1e-9)
    page = web.get(f"/calls/{site.ids['a4']}")
    assert 'id="window-closed"' in page.text and 'id="dispute-form"' not in page.text
    r = web.post(f"/calls/{site.ids['a4']}/disputes",
                 data={"csrf": form_token(page.text), "pick": "criterion:greeting", "reason": "x"})
    assert r.status_code == 409 and "window" in r.text
    api = site.api("agent-a").post(f"/v1/calls/{site.ids['a4']}/disputes",
                                   json={"target": "criterion", "id": "greeting", "reason": "x"})
    assert api.status_code == 409 and "QA_DISPUTE_WINDOW_DAYS" in api.json()["detail"]


def test_the_disputes_listing_by_cursor_through_the_api_and_the_page(site, monkeypatch):
    qa, alpha = site.api("qa"), site.api("alpha")
    every = walk_api(qa, "/v1/disputes", "disputes", page_size=1)
    whole = qa.get("/v1/disputes", params={"page_size": 500}).json()
    assert every == whole["disputes"] and whole["count"] == len(every) >= 2
    assert whole["next_cursor"] is None and {d["agent_id"] for d in every} == {"agent-a", "agent-b"}
    assert walk_api(alpha, "/v1/disputes", "disputes", page_size=1) == [
        d for d in every if d["agent_id"] == "agent-a"]
    foreign = paging.encode("audit", (datetime.now(UTC), 1))
    r = qa.get("/v1/disputes", params={"cursor": foreign})
    assert r.status_code == 422 and "not one this listing gave" in r.json()["detail"]
    r = qa.get("/v1/disputes", params={"limit": 5})
    assert r.status_code == 422 and "page_size" in r.json()["detail"]

    monkeypatch.setattr("qa_service.web.disputes.PAGE_SIZE", 1)
    web = site.web("qa")
    first = web.get("/disputes").text
    opened = [d for d in every if d["status"] == "open"]
    assert f'data-dispute="{opened[0]["id"]}"' in first and f'data-dispute="{opened[1]["id"]}"' not in first
    link = re.search(r'<a href="([^"]+)" rel="next">Next page', first).group(1).replace("&amp;", "&")
    second = web.get(f"/disputes{link}").text
    assert f'data-dispute="{opened[1]["id"]}"' in second and f'data-dispute="{opened[0]["id"]}"' not in second
    garbled = web.get("/disputes", params={"cursor": "nonsense"}).text
    assert "not one this listing gave" in garbled and f'data-dispute="{opened[0]["id"]}"' in garbled
