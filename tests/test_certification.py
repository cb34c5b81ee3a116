"""Certifications and refresher training through the API, the worker, the command line and the pages:
the `certification_lapsed` finding, repeats of outdated policy after training, the expiry list and its
webhook, the agents not trained on a new pack version, and CSV imports that take all lines or none.

The API flow runs on SQLite and PostgreSQL with a real Redis; calls are scored by the worker's job with
the text engines (no speech model).
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rq import Queue

from qa_service import notify, rescore
from qa_service.auth import issue_key
from qa_service.cli import main
from qa_service.errors import RulesError
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.services import certification as certs
from qa_service.settings import Settings
from qa_service.storage.memory import MemoryRepository
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, every
from qa_service.storage.repository import Certification, Membership, Scope, TrainingRecord
from qa_service.worker import jobs
from qa_service.worker.context import WorkerContext, activate
from qa_service.worker.run import run_worker
from tests.test_api import POLICIES, RUBRIC, Api, seed_rules
from tests.test_notify import SECRET, receiver, valid_signature, work  # noqa: F401 (receiver: a fixture)
from tests.test_paging import walk
from tests.test_web import sign_in

CALL_DAY = "2026-10-14"
CERT_RUBRIC = RUBRIC.replace('version: "2026.10"',
                             'version: "2026.11"\nrequires_certification: Residence advice')
PACK_V2 = POLICIES.replace('version: "2026-10-01"', 'version: "2026-11-01"').replace(
    "current: {value: 420, since: 2026-08-01}\n    superseded:\n",
    "current: {value: 450, since: 2026-11-01}\n    superseded:\n      - {value: 420, until: 2026-10-31}\n")
GREETING = {"speaker": "agent", "text": "Thanks for calling Harbourline Relocation, my name is Leo. "
                                        "This chat is recorded for quality."}


def chat(*agent_lines: str) -> bytes:
    turns = [GREETING, {"speaker": "customer", "text": "How much is the permit fee?"}]
    turns += [{"speaker": "agent", "text": line} for line in agent_lines]
    return json.dumps({"turns": turns}).encode()


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    from qa_service.pipeline import load_engines

    folder = tmp_path_factory.mktemp("engines")
    return load_engines(Settings(database_url=f"sqlite:///{folder / 'x.db'}", storage_dir=folder,
                                 model_cache_dir=folder / "models"), speech=False)


class Flow(Api):
    """The API plus the worker's job, scoring what is submitted."""

    def __init__(self, settings, redis_conn, engines):
        super().__init__(settings, redis_conn)
        seed_rules(self.repo)
        self.context = WorkerContext(settings=settings, store=self.repo, engines_loaded=engines,
                                     inputs=self.app.state.inputs)

    def scored(self, agent: str, day: str, transcript: bytes, rubric_version: str = "2026.10",
               pack_version: str = "2026-10-01") -> dict:
        r = self.submit(agent_id=agent, call_date=day, rubric_version=rubric_version,
                        policy_pack_version=pack_version,
                        files={"transcript": ("chat.json", transcript, "application/json")})
        assert r.status_code == 202, r.text
        call_id = r.json()["id"]
        previous = activate(self.context)
        try:
            jobs.process_call(call_id)
        finally:
            activate(previous)
        card = self.client.get(f"/v1/calls/{call_id}/scorecard", headers=self.h("supervisor"))
        assert card.status_code == 200, card.text
        return {"id": call_id, **card.json()}

    def post_csv(self, path: str, text: str, role: str = "qa"):
        return self.client.post(path, content=text.encode(),
                                headers={**self.h(role), "Content-Type": "text/csv"})


@pytest.fixture
def flow(make_settings, redis_url, redis_conn, database_url, engines, receiver):  # noqa: F811
    f = Flow(make_settings(redis_url=redis_url, database_url=database_url, review_share=0.0,
                           outgoing_webhook_url=receiver.url, outgoing_webhook_secret=SECRET,
                           allow_private_urls=True), redis_conn, engines)
    yield f
    f.repo.dispose()


def test_certifications_findings_repeats_untrained_and_expiry_through_the_api(flow, receiver):  # noqa: F811
    # The rubric version that requires the certification, uploaded through the API.
    r = flow.client.post("/v1/rubrics", content=CERT_RUBRIC.encode(), headers=flow.h("qa"))
    assert r.status_code == 201, r.text
    r = flow.post_csv("/v1/certifications", "agent_id,name,covers,issued,expires\n"
                      "agent-valid,Residence advice,harbourline-intake;valdoria-residence,"
                      "2026-01-01,2026-12-31\n"
                      "agent-lapsed,Residence advice,harbourline-intake,2025-10-14,2026-10-13\n"
                      "agent-other,Residence advice,some-other-rubric,2026-01-01,2027-06-30\n"
                      "agent-renew,Residence advice,harbourline-intake,2025-11-30,2026-11-30\n"
                      "agent-renew,Residence advice,harbourline-intake,2026-11-01,2027-11-30\n")
    assert r.status_code == 200, r.text
    assert r.json() == {"added": 5, "updated": 0, "unchanged": 0}

    # -- the certification_lapsed finding, on the call's date ------------------------------------------
    said = "The permit fee is 420 euros."
    cards = {a: flow.scored(a, CALL_DAY, chat(said), rubric_version="2026.11")
             for a in ("agent-valid", "agent-lapsed", "agent-none", "agent-other")}
    assert cards["agent-valid"]["findings"] == []
    [expired] = cards["agent-lapsed"]["findings"]  # expired the day before the call
    assert (expired["kind"], expired["certification"], expired["expired_on"]) == \
        ("certification_lapsed", "Residence advice", "2026-10-13")
    assert expired["required_by"] == {"kind": "rubric", "id": "harbourline-intake", "version": "2026.11"}
    assert "expired on 2026-10-13" in expired["detail"]
    [none] = cards["agent-none"]["findings"]
    assert none["kind"] == "certification_lapsed" and "no certification" in none["detail"]
    [other] = cards["agent-other"]["findings"]
    assert "does not cover rubric harbourline-intake" in other["detail"]
    # The finding takes no points: same words, same score and verdict.
    assert {(c["score"], c["passed"]) for c in cards.values()} == {(cards["agent-valid"]["score"],
                                                                   cards["agent-valid"]["passed"])}
    # Valid on its last day, and the rubric that needs nothing gives nothing.
    assert flow.scored("agent-lapsed", "2026-10-13", chat(said), rubric_version="2026.11")["findings"] == []
    assert flow.scored("agent-none", CALL_DAY, chat(said))["findings"] == []
    # The calls with a finding are in the review queue (no sample: the share is 0), the valid one is not.
    queue = flow.client.get("/v1/review-queue", headers=flow.h("supervisor")).json()["calls"]
    why = {c["call_id"]: c["why"] for c in queue}
    for agent in ("agent-lapsed", "agent-none", "agent-other"):
        assert why.get(cards[agent]["id"]) in ("finding", "auto_fail", "provisional", "to_check")
        assert next(c for c in queue if c["call_id"] == cards[agent]["id"])["findings"] == 1
    assert cards["agent-valid"]["id"] not in why or why[cards["agent-valid"]["id"]] != "finding"
    if not (cards["agent-lapsed"]["auto_fail"] or cards["agent-lapsed"]["to_check"]):
        assert why[cards["agent-lapsed"]["id"]] == "finding"

    # -- repeats: an outdated fee after the refresher, and before it -----------------------------------
    old_fee = chat("The permit fee is 380 euros.")
    before = flow.scored("agent-r", "2026-10-05", old_fee)
    r = flow.post_csv("/v1/training-records", "agent_id,pack_id,version,completed\n"
                      "agent-r,valdoria-residence,2026-10-01,2026-10-10\n")
    assert r.json() == {"added": 1, "updated": 0, "unchanged": 0}, r.text
    after = flow.scored("agent-r", CALL_DAY, old_fee)
    untrained_agent = flow.scored("agent-u", CALL_DAY, old_fee)
    outdated = {name: [v for v in card["violations"] if v["kind"] == "outdated_policy"]
                for name, card in (("before", before), ("after", after), ("untrained", untrained_agent))}
    assert all(len(v) == 1 for v in outdated.values()), outdated
    assert outdated["after"][0]["repeat"] is True
    assert (outdated["after"][0]["trained_on"], outdated["after"][0]["trained_version"]) == \
        ("2026-10-10", "2026-10-01")
    assert not outdated["before"][0].get("repeat") and "trained_on" not in outdated["before"][0]
    assert not outdated["untrained"][0].get("repeat")

    # -- a rescore keeps findings and repeats (they come from the records, under the new rules) ---------
    rubric = load_rubric(CERT_RUBRIC)
    report = rescore.rescore_stored(flow.repo, rubric, None, flow.context.engines_loaded.nlp)
    assert report.calls > 0
    latest = {c.call_id: c.data for c in flow.repo.latest_scorecards()}
    assert latest[cards["agent-lapsed"]["id"]]["findings"][0]["expired_on"] == "2026-10-13"
    assert latest[cards["agent-valid"]["id"]]["findings"] == []
    repeats = [v.get("repeat") for v in latest[after["id"]]["violations"] if v["kind"] == "outdated_policy"]
    assert repeats == [True]
    # Rescored under the rubric that requires it, the call that needed nothing now has its finding too.
    assert latest[untrained_agent["id"]]["findings"][0]["kind"] == "certification_lapsed"

    # -- untrained agents after a policy change ----------------------------------------------------------
    r = flow.client.post("/v1/policy-packs", content=PACK_V2.encode(), headers=flow.h("qa"))
    assert r.status_code == 201, r.text
    r = flow.client.post("/v1/training-records", headers=flow.h("qa"), json=[
        {"agent_id": "agent-valid", "pack_id": "valdoria-residence", "version": "2026-11-01",
         "completed": "2026-11-02"}])
    assert r.status_code == 200, r.text
    r = flow.client.get("/v1/policy-packs/valdoria-residence/versions/2026-11-01/untrained",
                        headers=flow.h("supervisor"))
    assert r.status_code == 200, r.text
    body = r.json()
    # agent-r trained on the old version only; agent-valid trained on the new one; no call, no cover: out.
    assert [a["agent_id"] for a in body["agents"]] == [
        "agent-lapsed", "agent-none", "agent-other", "agent-r", "agent-u"]
    assert body["count"] == 5 and all(a["took_calls"] for a in body["agents"])
    assert flow.client.get("/v1/policy-packs/valdoria-residence/versions/2099-01-01/untrained",
                           headers=flow.h("supervisor")).status_code == 404
    # A call after the change quoting the fee that changed: not a repeat for agent-r (trained on 2026-10-01,
    # which taught 420), a repeat for agent-valid (trained on 2026-11-01).
    new_old = chat("The permit fee is 420 euros.")
    r_card = flow.scored("agent-r", "2026-11-20", new_old, pack_version="2026-11-01")
    v_card = flow.scored("agent-valid", "2026-11-20", new_old, pack_version="2026-11-01",
                         rubric_version="2026.11")
    assert [v.get("repeat", False) for v in r_card["violations"] if v["kind"] == "outdated_policy"] == [False]
    assert [v.get("repeat") for v in v_card["violations"] if v["kind"] == "outdated_policy"] == [True]

    # -- the expiry list and its webhook, sent once -----------------------------------------------------
    r = flow.client.get("/v1/certifications/expiring?on=2026-10-20", headers=flow.h("supervisor"))
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["within_days"] == 90
    # agent-valid's ends in 72 days; agent-renew's first one is renewed; the others are far off or lapsed.
    assert [(c["agent_id"], c["expires"], c["days_left"]) for c in listed["certifications"]] == [
        ("agent-valid", "2026-12-31", 72)]
    wider = flow.client.get("/v1/certifications/expiring?on=2026-10-20&within_days=365",
                            headers=flow.h("supervisor")).json()
    assert [c["agent_id"] for c in wider["certifications"]] == ["agent-valid", "agent-other"]
    lapsed = flow.client.get("/v1/certifications/lapsed?on=2026-10-20", headers=flow.h("supervisor")).json()
    assert [(c["agent_id"], c["days_left"]) for c in lapsed["certifications"]] == [("agent-lapsed", -7)]
    assert lapsed["next_cursor"] is None

    notify_queue = Queue(notify.queue_name(flow.settings), connection=flow.queue.connection)
    day = date(2026, 10, 20)
    sent = certs.send_expiry_notices(store=flow.repo, settings=flow.settings, queue=notify_queue, today=day)
    assert len(sent) == 1
    assert certs.send_expiry_notices(store=flow.repo, settings=flow.settings, queue=notify_queue,
                                     today=day) == []
    assert certs.send_expiry_notices(store=flow.repo, settings=flow.settings, queue=notify_queue,
                                     today=day + timedelta(days=5)) == []
    previous = activate(flow.context)
    try:
        work(notify_queue)
    finally:
        activate(previous)
    # (The scored calls' own webhooks went out too: only the certification's is counted here.)
    [(headers, body_bytes)] = [(h, b) for h, b in receiver.received
                               if h["x-event"] == "certification.expiring"]
    assert headers["x-event"] == "certification.expiring" and valid_signature(headers, body_bytes)
    payload = json.loads(body_bytes)
    assert (payload["agent_id"], payload["name"], payload["expires_on"], payload["days_left"]) == \
        ("agent-valid", "Residence advice", "2026-12-31", 72)
    # A corrected expiry date is a new expiry: noticed again once it is in the window.
    flow.post_csv("/v1/certifications", "agent_id,name,covers,issued,expires\n"
                  "agent-valid,Residence advice,harbourline-intake;valdoria-residence,"
                  "2026-01-01,2027-01-10\n")
    assert len(certs.send_expiry_notices(store=flow.repo, settings=flow.settings, queue=notify_queue,
                                         today=day)) == 1


def test_the_worker_sends_an_expiry_notice_once(make_settings, redis_url, redis_conn, receiver):  # noqa: F811
    settings = make_settings(redis_url=redis_url, outgoing_webhook_url=receiver.url,
                             outgoing_webhook_secret=SECRET, allow_private_urls=True)
    api = Api(settings, redis_conn)
    today = datetime.now(UTC).date()
    api.repo.certification.import_certifications([
        Certification("agent-soon", "Residence advice", ("harbourline-intake",), today - timedelta(days=300),
                      today + timedelta(days=30)),
        Certification("agent-later", "Residence advice", ("harbourline-intake",), today,
                      today + timedelta(days=200))])
    # No calls to score: a context whose engines count as loaded skips loading the models.
    context = WorkerContext(settings=settings, store=api.repo, engines_loaded=object())
    try:
        run_worker(settings, burst=True, context=context)  # its maintenance queues the notice, then sends it
        run_worker(settings, burst=True, context=context)  # checks again: nothing new
    finally:
        activate(None)
    events = [json.loads(body) for headers, body in receiver.received]
    assert [(e["event"], e["agent_id"], e["days_left"]) for e in events] == [
        ("certification.expiring", "agent-soon", 30)]
    api.repo.dispose()


# -- imports: all lines or none ----------------------------------------------------------------------

GOOD = ("agent_id,name,covers,issued,expires\n"
        "agent-a,Residence advice,harbourline-intake,2026-01-01,2026-12-31\n"
        '"agent-b","Residence advice, senior","harbourline-intake; valdoria-residence",'
        "2026-02-01,2027-01-31\n")
BAD = ("agent_id,name,covers,issued,expires\n"
       "agent-c,Residence advice,harbourline-intake,2026-01-01,2026-12-31\n"
       "agent-d,Residence advice,harbourline-intake,2026-13-01,2026-12-31\n"
       "agent-e,,harbourline-intake,2026-05-01,2026-04-30\n"
       "agent-f,Residence advice,harbourline-intake,2026-01-01\n")


def test_csv_import_from_the_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'qa.db'}")
    monkeypatch.setenv("QA_STORAGE_DIR", str(tmp_path / "storage"))
    (tmp_path / "good.csv").write_text(GOOD)
    (tmp_path / "bad.csv").write_text(BAD)
    assert main(["certifications", "import", str(tmp_path / "good.csv")]) == 0
    assert "2 added, 0 updated, 0 unchanged" in capsys.readouterr().out
    assert main(["certifications", "import", str(tmp_path / "good.csv")]) == 0
    assert "0 added, 0 updated, 2 unchanged" in capsys.readouterr().out

    assert main(["certifications", "import", str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err
    assert "nothing was imported" in err
    assert "line 3: issued '2026-13-01' is not a date (YYYY-MM-DD)" in err
    assert "line 4: name is empty" in err
    assert "line 4: expires (2026-04-30) is before issued (2026-05-01)" in err
    assert "line 5: 4 values for 5 columns" in err
    assert "line 2" not in err  # the good line is fine, and not imported either

    assert main(["certifications", "list"]) == 0
    out = capsys.readouterr().out
    assert "agent-a" in out and "harbourline-intake;valdoria-residence" in out
    assert "agent-c" not in out  # nothing of the bad file
    (tmp_path / "wrong-header.csv").write_text("agent,name\nx,y\n")
    assert main(["certifications", "import", str(tmp_path / "wrong-header.csv")]) == 2
    assert "line 1: the header must name the columns agent_id,name,covers,issued,expires" in \
        capsys.readouterr().err

    # Training: a pack version must be stored; a bad file stores nothing.
    from qa_service.storage import open_repository

    repo = open_repository(f"sqlite:///{tmp_path / 'qa.db'}")
    seed_rules(repo)
    (tmp_path / "training.csv").write_text("agent_id,pack_id,version,completed\n"
                                           "agent-a,valdoria-residence,2026-10-01,2026-10-10\n"
                                           "agent-b,valdoria-residence,2099-01-01,2026-10-10\n")
    assert main(["training", "import", str(tmp_path / "training.csv")]) == 2
    err = capsys.readouterr().err
    assert "line 3: no policy pack 'valdoria-residence' version '2099-01-01' is stored" in err
    assert repo.certification.training() == []
    (tmp_path / "training.csv").write_text("agent_id,pack_id,version,completed\n"
                                           "agent-a,valdoria-residence,2026-10-01,2026-10-10\n")
    assert main(["training", "import", str(tmp_path / "training.csv")]) == 0
    assert main(["training", "list", "--untrained", "--pack", "valdoria-residence", "--version",
                 "2026-10-01"]) == 0
    out = capsys.readouterr().out
    assert "agent-b" in out and "agent-a" not in out.split("already recorded")[-1]
    assert repo.audit.entries(action="import_training")
    repo.dispose()


def test_api_imports_refuse_bad_lines_and_roles(make_settings, redis_url, redis_conn) -> None:
    api = Api(make_settings(redis_url=redis_url), redis_conn)
    csv_headers = {"Content-Type": "text/csv"}
    r = api.client.post("/v1/certifications", content=BAD.encode(), headers={**api.h("qa"), **csv_headers})
    assert r.status_code == 422
    assert sorted({e["line"] for e in r.json()["errors"]}) == [3, 4, 5]
    assert api.client.get("/v1/certifications", headers=api.h("supervisor")).json() == {
        "certifications": [], "page_size": 50, "next_cursor": None}
    r = api.client.post("/v1/certifications", headers=api.h("qa"), json=[
        {"agent_id": "a", "name": "N", "covers": ["harbourline-intake"], "issued": "2026-01-01",
         "expires": "2026-12-31"},
        {"agent_id": "b", "name": "N", "covers": [], "issued": "2026-01-01", "expires": "2026-12-31"}])
    assert r.status_code == 422 and r.json()["errors"][0]["item"] == 2
    # A field the file's columns do not name is refused, not dropped (a misspelt "expires" would be lost).
    r = api.client.post("/v1/certifications", headers=api.h("qa"), json=[
        {"agent_id": "a", "name": "N", "covers": "harbourline-intake", "issued": "2026-01-01",
         "expires": "2026-12-31", "expiry": "2027-12-31"}])
    assert r.status_code == 422 and "unknown fields expiry" in r.json()["errors"][0]["message"]
    # Supervisors read, they do not write; telephony keys do neither.
    r = api.client.post("/v1/certifications", content=GOOD.encode(),
                        headers={**api.h("supervisor"), **csv_headers})
    assert r.status_code == 403
    assert api.client.get("/v1/certifications", headers=api.h("telephony")).status_code == 403
    r = api.client.post("/v1/certifications", content=GOOD.encode(),
                        headers={**api.h("admin"), **csv_headers})
    assert r.json()["added"] == 2
    listed = api.client.get("/v1/certifications?agent_id=agent-b", headers=api.h("supervisor")).json()
    assert [(c["name"], c["covers"]) for c in listed["certifications"]] == [
        ("Residence advice, senior", ["harbourline-intake", "valdoria-residence"])]
    r = api.client.get("/v1/certifications/expiring?within_days=-1", headers=api.h("qa"))
    assert r.status_code == 422
    api.repo.dispose()


def test_certifications_page(make_settings, redis_url, redis_conn) -> None:
    api = Api(make_settings(redis_url=redis_url), redis_conn)
    today = datetime.now(UTC).date()
    seed_rules(api.repo)
    api.repo.certification.import_certifications([
        Certification("agent-soon", "Residence advice", ("harbourline-intake",), today - timedelta(days=300),
                      today + timedelta(days=20)),
        Certification("agent-gone", "Residence advice", ("harbourline-intake",), today - timedelta(days=400),
                      today - timedelta(days=3)),
        Certification("agent-far", "Residence advice", ("harbourline-intake",), today,
                      today + timedelta(days=300))])
    api.repo.certification.import_training([TrainingRecord("agent-soon", "valdoria-residence", "2026-10-01",
                                                           date(2026, 10, 10))])
    client = TestClient(api.app, base_url="http://testserver")
    assert client.get("/certifications", follow_redirects=False).status_code == 303  # sign in first
    assert sign_in(client, api.keys["supervisor"]).status_code == 303
    page = client.get("/certifications")
    assert page.status_code == 200
    expiring, lapsed = page.text.split('<section id="expiring">')[1].split('<section id="lapsed">')
    assert "agent-soon" in expiring and "agent-far" not in expiring and "agent-gone" not in expiring
    assert "agent-gone" in lapsed and "lapsed 3 d ago" in lapsed
    assert 'href="/certifications" aria-current="page"' in page.text
    wide = client.get("/certifications?within_days=365").text.split('<section id="lapsed">')[0]
    assert "agent-far" in wide
    one = client.get("/certifications?agent_id=agent-soon").text
    assert "valdoria-residence" in one.split('<section id="agent">')[1].split('<section id="expiring">')[0]
    bad = client.get("/certifications?within_days=soon")
    assert bad.status_code == 200 and "whole number of days" in bad.text
    api.repo.dispose()


# -- listings a page at a time ---------------------------------------------------------------------

ON = date(2026, 10, 20)


def agents_records() -> tuple[list[Membership], list[Certification], list[TrainingRecord]]:
    """Six agents, the even ones in team alpha: certifications lapsed, expiring, renewed and sharing an
    expiry date (ties broken by agent), and training for the first three."""
    members = [Membership(f"agent-{n}", "alpha" if n % 2 == 0 else "bravo", "in-house", date(2026, 1, 1))
               for n in range(6)]
    held = []
    for n in range(6):
        agent = f"agent-{n}"
        held += [Certification(agent, "Residence advice", ("valdoria-residence",), date(2025, 1, 1),
                               ON + timedelta(days=n * 10 - 25)),
                 Certification(agent, "Chat", ("harbourline-intake",), date(2025, 6, 1), date(2026, 11, 1)),
                 Certification(agent, "Old", ("harbourline-intake",), date(2024, 1, 1), date(2026, 9, 1))]
    held.append(Certification("agent-4", "Chat", ("harbourline-intake",), date(2026, 10, 1),
                              date(2027, 12, 31)))  # renews agent-4's first Chat
    trained = [TrainingRecord(f"agent-{n}", "valdoria-residence", "2026-10-01", date(2026, 10, n + 1))
               for n in range(3)]
    return members, held, trained


def _unrenewed(held: list[Certification], keep: Any) -> list[Certification]:
    """The oracle: certifications `keep` takes that no later expiry of the same agent and name renewed."""
    return [c for c in held if keep(c) and not any(
        (o.agent_id, o.name) == (c.agent_id, c.name) and o.expires_on > c.expires_on for o in held)]


def test_certification_listings_are_read_a_page_at_a_time_inside_the_scope(make_settings, redis_url,
                                                                          redis_conn, database_url):
    api = Api(make_settings(redis_url=redis_url, database_url=database_url), redis_conn)
    try:
        seed_rules(api.repo)
        members, held, trained = agents_records()
        api.repo.teams.put_memberships(members)
        api.repo.certification.import_certifications(held)
        api.repo.certification.import_training(trained)
        alpha = issue_key(api.repo, "supervisor", "alpha lead", Scope(teams=("alpha",)))[1]
        soon = _unrenewed(held, lambda c: ON <= c.expires_on <= ON + timedelta(days=90))
        gone = _unrenewed(held, lambda c: c.expires_on < ON)
        untrained_url = "/v1/policy-packs/valdoria-residence/versions/2026-10-01/untrained"
        def in_alpha(agent: str) -> bool:
            return int(agent[-1]) % 2 == 0

        for headers, inside in ((api.h("supervisor"), lambda agent: True),
                                ({"Authorization": f"Bearer {alpha}"}, in_alpha)):
            def read(url: str, field: str, headers: dict[str, str] = headers, **params: Any) -> list[Any]:
                return walk(lambda u, **kw: api.client.get(u, headers=headers, **kw), url, field, **params)

            def mine(items: list[Any], inside: Any = inside) -> list[Any]:
                return [i for i in items if inside(i.agent_id)]

            listed = read("/v1/certifications", "certifications")
            assert [(c["agent_id"], c["name"], c["issued"]) for c in listed] == [
                (c.agent_id, c.name, c.issued_on.isoformat())
                for c in sorted(mine(held), key=lambda c: (c.agent_id, c.name, c.issued_on))]
            expiring = read("/v1/certifications/expiring", "certifications", on=ON.isoformat())
            assert [(c["expires"], c["agent_id"], c["name"]) for c in expiring] == [
                (c.expires_on.isoformat(), c.agent_id, c.name)
                for c in sorted(mine(soon), key=lambda c: (c.expires_on, c.agent_id, c.name))]
            lapsed = read("/v1/certifications/lapsed", "certifications", on=ON.isoformat())
            assert [(c["expires"], c["agent_id"], c["name"]) for c in lapsed] == [
                (c.expires_on.isoformat(), c.agent_id, c.name)
                for c in sorted(mine(gone), key=lambda c: (c.expires_on, c.agent_id, c.name), reverse=True)]
            records = read("/v1/training-records", "training_records", page_size=1)
            assert [r["agent_id"] for r in records] == [r.agent_id for r in mine(trained)]
            agents = read(untrained_url, "agents", page_size=1)
            assert [a["agent_id"] for a in agents] == [a for a in ("agent-3", "agent-4", "agent-5")
                                                       if inside(a)]
        # Ties on a date and a renewal left out, across page boundaries.
        assert len(soon) == 8 and len(gone) == 9 and ("agent-4", "Chat") not in {
            (c.agent_id, c.name) for c in soon}

        # A cursor of one listing is refused by another; page numbers and limits are refused.
        admin = api.h("admin")
        page = api.client.get("/v1/certifications/expiring", params={"on": ON.isoformat(), "page_size": 1},
                              headers=admin).json()
        assert page["count"] == 1 and page["within_days"] == 90 and page["next_cursor"]
        for url in ("/v1/certifications", "/v1/certifications/lapsed", "/v1/training-records", untrained_url):
            r = api.client.get(url, params={"cursor": page["next_cursor"]}, headers=admin)
            assert r.status_code == 422 and "not one this listing gave" in r.json()["detail"], url
            r = api.client.get(url, params={"limit": 10}, headers=admin)
            assert r.status_code == 422 and "page_size" in r.json()["detail"], url

        # The in-memory twin pages alike.
        twin = MemoryRepository()
        twin.teams.put_memberships(members)
        twin.certification.import_certifications(held)
        for store in (api.repo, twin):
            assert [(i.certification.agent_id, i.certification.name) for i in every(
                lambda cursor, store=store: certs.lapsed(store=store, today=ON, scope=Scope(teams=("alpha",)),
                                                         cursor=cursor, page_size=2))] == [
                (c.agent_id, c.name) for c in sorted((c for c in gone if in_alpha(c.agent_id)),
                                                     key=lambda c: (c.expires_on, c.agent_id, c.name),
                                                     reverse=True)]
    finally:
        api.repo.dispose()


def test_the_certifications_page_links_to_the_next_page_of_each_list(make_settings, redis_url,
                                                                     redis_conn) -> None:
    api = Api(make_settings(redis_url=redis_url), redis_conn)
    today = datetime.now(UTC).date()
    api.repo.certification.import_certifications([
        Certification(f"agent-{n:02}", "Residence advice", ("harbourline-intake",),
                      today - timedelta(days=300), today + timedelta(days=1 + n))
        for n in range(DEFAULT_PAGE_SIZE + 5)] + [
        Certification("agent-gone", "Residence advice", ("harbourline-intake",), today - timedelta(days=400),
                      today - timedelta(days=3))])
    client = TestClient(api.app, base_url="http://testserver")
    assert sign_in(client, api.keys["supervisor"]).status_code == 303

    def sections(page: str) -> tuple[str, str]:
        expiring, lapsed = page.split('<section id="expiring">')[1].split('<section id="lapsed">')
        return expiring, lapsed

    expiring, lapsed = sections(client.get("/certifications").text)
    assert expiring.count('class="agent-link"') == DEFAULT_PAGE_SIZE and "agent-49" in expiring
    assert "agent-50" not in expiring and "agent-gone" in lapsed and 'rel="next"' not in lapsed
    link = re.search(r'<a href="([^"]+)" rel="next">Next page', expiring)
    assert link and "expiring_cursor=" in link.group(1)
    expiring, lapsed = sections(client.get("/certifications" + html.unescape(link.group(1))).text)
    shown = re.findall(r'class="agent-link"[^>]*>(agent-\d+)<', expiring)
    assert shown == [f"agent-{n}" for n in range(50, 55)]
    assert 'rel="next"' not in expiring and 'rel="first"' in expiring and "agent-gone" in lapsed
    # A cursor the listing did not give is said on the page, which shows the first page.
    cursor = html.unescape(link.group(1)).split("expiring_cursor=")[1]
    other = client.get("/certifications", params={"lapsed_cursor": cursor})
    assert other.status_code == 200 and "not one this listing gave" in other.text
    assert "agent-gone" in sections(other.text)[1]
    api.repo.dispose()


# -- the rules and the pure parts, with the memory twin ---------------------------------------------

def test_requires_certification_is_validated() -> None:
    assert load_rubric(CERT_RUBRIC).requires_certification == "Residence advice"
    assert load_rubric(RUBRIC).requires_certification is None
    pack = load_policy_pack(POLICIES + "requires_certification: Permits\n")
    assert pack.requires_certification == "Permits"
    with pytest.raises(RulesError, match="requires_certification"):
        load_rubric(RUBRIC + "requires_certification: ''\n")
    with pytest.raises(RulesError, match="requires_certification"):
        load_policy_pack(POLICIES + "requires_certification: [a, b]\n")


CERT = Certification("a", "Residence advice", ("harbourline-intake",), date(2026, 1, 1), date(2026, 10, 13))


@pytest.mark.parametrize(("certs_held", "day", "expected"), [
    ([CERT], date(2026, 10, 13), None),  # its last day
    ([CERT], date(2026, 1, 1), None),  # its first day
    ([CERT], date(2026, 10, 14), "expired on 2026-10-13"),  # one day after
    ([CERT], date(2025, 12, 31), "was issued on 2026-01-01, after the call"),
    ([], date(2026, 5, 1), "no certification 'Residence advice' on record"),
    ([Certification("a", "Residence advice", ("other",), date(2026, 1, 1), date(2026, 12, 31))],
     date(2026, 5, 1), "does not cover rubric harbourline-intake"),
    ([Certification("a", "Something else", ("harbourline-intake",), date(2026, 1, 1), date(2026, 12, 31))],
     date(2026, 5, 1), "no certification 'Residence advice' on record"),
    # A renewal covers the day the first one no longer does.
    ([CERT, Certification("a", "Residence advice", ("harbourline-intake",), date(2026, 10, 14),
                          date(2027, 10, 13))], date(2026, 10, 20), None),
])
def test_lapsed_finding_by_date(certs_held, day, expected) -> None:
    finding = certs.lapsed_finding(certs_held, "rubric", "harbourline-intake", "2026.11", "Residence advice",
                                   day)
    if expected is None:
        assert finding is None
    else:
        assert finding is not None and finding["kind"] == "certification_lapsed"
        assert expected in finding["detail"]


def test_annotate_with_the_memory_twin() -> None:
    repo = MemoryRepository()
    seed_rules(repo)
    repo.certification.import_certifications([CERT])
    repo.certification.import_training([TrainingRecord("a", "valdoria-residence", "2026-10-01",
                                                       date(2026, 10, 10))])
    rubric, pack = load_rubric(CERT_RUBRIC), load_policy_pack(POLICIES)
    outdated = {"id": "permit-fee", "kind": "outdated_policy", "policy_id": "permit-fee",
                "detail": "stated 380"}
    prohibited = {"id": "promise", "kind": "prohibited", "detail": ""}
    card = {"agent_id": "a", "call_date": "2026-10-14", "violations": [outdated, prohibited], "score": 90.0}
    out = certs.CertificationCheck(repo).annotate(card, rubric, pack)
    assert [f["expired_on"] for f in out["findings"]] == ["2026-10-13"]
    assert out["violations"][0]["repeat"] is True and "repeat" not in out["violations"][1]
    assert out["score"] == 90.0 and "findings" not in card  # the input card is left as it was
    # On the training day itself it is not yet a repeat; annotating twice gives the same card.
    same_day = certs.CertificationCheck(repo).annotate({**card, "call_date": "2026-10-10"}, rubric, pack)
    assert "repeat" not in same_day["violations"][0] and same_day["findings"] == []
    assert certs.CertificationCheck(repo).annotate(out, rubric, pack) == out
