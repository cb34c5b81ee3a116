"""GET /v1/policy-currency: the refresher list of agents stating outdated policy, with role checks."""

from __future__ import annotations

import uuid
from datetime import date

from fastapi.testclient import TestClient

from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.storage import NewCall


def _card(agent: str, day: str, violations: list[dict]) -> dict:
    return {"call_id": "x", "agent_id": agent, "call_date": day, "transcript": [], "criteria": [],
            "violations": violations, "score": 50.0, "passed": False, "auto_fail": False,
            "rubric": {"id": "r", "version": "1", "sha256": "s"}}


def test_refresher_list_per_agent_and_fact(make_settings, redis_url) -> None:
    app = create_app(make_settings(redis_url=redis_url))
    repo = app.state.repo
    fee = {"id": "fee", "kind": "outdated_policy", "policy_id": "fee", "detail": "said 380; 420 since Aug"}
    rows = [("ana", date(2026, 10, 1), [fee]), ("ana", date(2026, 10, 9), [fee]),
            ("ben", date(2026, 10, 2), [{"id": "promise", "kind": "prohibited", "policy_id": None}]),
            ("cy", date(2026, 9, 1), [fee])]
    ids = []
    for agent, day, violations in rows:
        call, _ = repo.add_call(NewCall(id=str(uuid.uuid4()), agent_id=agent, call_date=day, rubric_id="r",
                                        rubric_version="1", policy_pack_id="p", policy_pack_version="1"))
        repo.start_call(call.id)
        repo.finish_call(call.id, _card(agent, day.isoformat(), violations))
        ids.append(call.id)
    client = TestClient(app)
    sup = {"Authorization": f"Bearer {create_key(repo, 'supervisor', 's')}"}
    body = client.get("/v1/policy-currency", params={"from": "2026-10-01"}, headers=sup).json()
    assert body["calls_read"] == 3
    assert list(body["agents"]) == ["ana"]
    assert [m["call_id"] for m in body["agents"]["ana"]["fee"]] == ids[:2]
    assert body["agents"]["ana"]["fee"][0]["detail"].startswith("said 380")
    only_cy = client.get("/v1/policy-currency", params={"agent_id": "cy"}, headers=sup).json()
    assert list(only_cy["agents"]) == ["cy"]

    tel = {"Authorization": f"Bearer {create_key(repo, 'telephony', 't')}"}
    assert client.get("/v1/policy-currency", headers=tel).status_code == 403
    assert client.get("/v1/policy-currency").status_code == 401
    bad = client.get("/v1/policy-currency", params={"from": "2026-10-09", "to": "2026-10-01"}, headers=sup)
    assert bad.status_code == 422
