"""Dual review (QA_DUAL_REVIEW): on auto-failed and high-risk calls a reviewed verdict is final only when two
different reviewers agree; until then the call stays in the review queue and the aggregates keep the
automatic verdict. Through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from qa_service.app import create_app
from qa_service.auth import issue_key
from qa_service.dualreview import needs_two, parse_dual
from qa_service.settings import Settings
from qa_service.storage.views import Filters
from tests.test_views import SEED, make_scorecard, seed_calls


def make_site(database_url, tmp_path, dual: str):
    settings = Settings(database_url=database_url, storage_dir=tmp_path / "storage",
                        model_cache_dir=tmp_path / "models", redis_url="redis://127.0.0.1:1/0",
                        review_share=0.0, dual_review=dual)
    app = create_app(settings)
    repo = app.state.repo
    ids = seed_calls(repo)
    clients = {}
    for who in ("r1", "r2", "r3"):
        clients[who] = TestClient(app, headers={"Authorization": f"Bearer {issue_key(repo, 'qa', who)[1]}"})
    return app, repo, ids, clients


@pytest.fixture
def site(database_url, tmp_path):
    app, repo, ids, clients = make_site(database_url, tmp_path, "auto_fail, high_risk")
    yield repo, ids, clients
    repo.dispose()


def state(repo, clients, ids, call: str):
    """What the aggregates, the agent's API aggregate, the queue and the reviewed scorecard say."""
    totals = repo.views.totals(Filters(agent_id="agent-a"))
    agent = clients["r1"].get("/v1/agents/agent-a/scorecards").json()["aggregate"]
    queue = {c["call_id"]: c["why"] for c in clients["r1"].get("/v1/review-queue").json()["calls"]}
    card = clients["r1"].get(f"/v1/calls/{ids[call]}/scorecard/reviewed").json()["review"]
    return totals, agent, queue.get(ids[call]), card


def test_one_overturn_waits_a_second_agreeing_reviewer_makes_it_final(site):
    repo, ids, clients = site
    dismiss = {"target": "violation", "id": "guarantee", "action": "dismiss", "reason": "said as a joke"}
    before_totals, before_agent, why, _ = state(repo, clients, ids, "a2")
    assert why == "auto_fail"  # a2 auto-failed on a guarantee: in the queue before any review

    # One reviewer dismisses the guarantee: the verdict would turn to PASS, but waits for a second reviewer.
    r = clients["r1"].post(f"/v1/calls/{ids['a2']}/reviews", json=dismiss)
    assert r.status_code == 201
    result = r.json()["result"]
    assert result["reviewed_passed"] is False and result["reviewed_auto_fail"] is True
    assert result["dual_review"]["why"] == "auto_fail" and result["dual_review"]["final"] is False
    pending = [(p["id"], p["awaits"]) for p in result["dual_review"]["pending"]]
    assert pending == [("guarantee", "second_reviewer")]
    totals, agent, why, card = state(repo, clients, ids, "a2")
    assert (totals, agent) == (before_totals, before_agent)
    assert why == "second_review"
    assert card["dual_review"]["note"] == "the reviewed verdict awaits a second reviewer"
    # The same reviewer again is still one reviewer.
    clients["r1"].post(f"/v1/calls/{ids['a2']}/reviews", json={**dismiss, "reason": "sure"})
    assert state(repo, clients, ids, "a2")[2] == "second_review"

    # A second reviewer disagrees: the call stays for a third.
    confirm = {**dismiss, "action": "confirm", "reason": "it is a promise"}
    second = clients["r2"].post(f"/v1/calls/{ids['a2']}/reviews", json=confirm).json()["result"]
    assert second["dual_review"]["pending"][0]["awaits"] == "third_reviewer"
    assert sorted(v["action"] for v in second["dual_review"]["pending"][0]["votes"]) == ["confirm", "dismiss"]
    totals, agent, why, _ = state(repo, clients, ids, "a2")
    assert (totals, agent, why) == (before_totals, before_agent, "second_review")

    # A third reviewer agrees with the first: two of three agree, the dismissal is final.
    third = clients["r3"].post(f"/v1/calls/{ids['a2']}/reviews", json=dismiss).json()["result"]
    assert third["dual_review"]["final"] is True and third["dual_review"]["pending"] == []
    assert third["reviewed_passed"] is True and third["reviewed_auto_fail"] is False
    totals, agent, why, _ = state(repo, clients, ids, "a2")
    assert why is None  # reviewed, nothing waits: out of the queue
    assert totals.count == before_totals.count
    assert totals.auto_fail_count == before_totals.auto_fail_count - 1
    assert round(totals.pass_rate * totals.count) == round(before_totals.pass_rate * before_totals.count) + 1
    assert agent["auto_fail_count"] == before_agent["auto_fail_count"] - 1
    assert agent["pass_rate"] > before_agent["pass_rate"]


def test_two_reviewers_who_agree_at_once_make_a_high_risk_verdict_final(site):
    repo, ids, clients = site
    fail = {"target": "criterion", "id": "greeting", "action": "override_fail", "reason": "no company name"}
    before = repo.views.totals(Filters(agent_id="agent-a"))
    first = clients["r1"].post(f"/v1/calls/{ids['a3']}/reviews", json=fail).json()["result"]
    assert first["dual_review"]["why"] == "high_risk" and first["reviewed_score"] == 40.0
    assert repo.views.totals(Filters(agent_id="agent-a")) == before
    final = clients["r2"].post(f"/v1/calls/{ids['a3']}/reviews", json=fail).json()["result"]
    assert final["dual_review"]["final"] is True and final["reviewed_score"] == 30.0
    after = repo.views.totals(Filters(agent_id="agent-a"))
    assert round(after.mean_score * after.count, 1) == round(before.mean_score * before.count - 10.0, 1)
    # A call that is neither auto-failed nor high-risk: one reviewer decides, as without the setting.
    one = clients["r1"].post(f"/v1/calls/{ids['a1']}/reviews", json=fail).json()["result"]
    assert "dual_review" not in one and one["reviewed_score"] == 90.0


def test_without_the_setting_one_reviewer_decides(database_url, tmp_path):
    app, repo, ids, clients = make_site(database_url, tmp_path, "")
    try:
        r = clients["r1"].post(f"/v1/calls/{ids['a2']}/reviews", json={
            "target": "violation", "id": "guarantee", "action": "dismiss", "reason": "joke"}).json()["result"]
        assert "dual_review" not in r and r["reviewed_passed"] is True
        queue = clients["r1"].get("/v1/review-queue").json()["calls"]
        assert ids["a2"] not in {c["call_id"] for c in queue}
    finally:
        repo.dispose()


def test_the_setting_names_kinds_and_refuses_others():
    assert parse_dual(" high_risk ,AUTO_FAIL") == frozenset({"auto_fail", "high_risk"})
    assert parse_dual("") == set()
    with pytest.raises(ValueError, match="QA_DUAL_REVIEW names everything"):
        parse_dual("everything")
    with pytest.raises(ValidationError):
        Settings(dual_review="auto-fail")
    cards = {s.key: make_scorecard(s, s.key) for s in SEED}
    assert needs_two(cards["a2"], {"auto_fail"}) == "auto_fail"
    assert needs_two(cards["a3"], {"auto_fail"}) is None
    assert needs_two(cards["a3"], {"high_risk"}) == "high_risk"
    assert needs_two(cards["a1"], {"auto_fail", "high_risk"}) is None
