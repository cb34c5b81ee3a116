"""Calibration sessions: three reviewers score five calls blind; the agreement figures are worked out by
hand below from the designed answers; answers are practice and change no scorecard.

Runs through the API on SQLite and PostgreSQL, plus the pure figures and the in-memory twin.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from qa_service.app import create_app
from qa_service.auth import issue_key
from qa_service.calibration import CalibrationSession, Reviewer, SessionCall, Sheet, agreement, fleiss
from qa_service.errors import Conflict, Forbidden
from qa_service.services import calibration, teams
from qa_service.settings import Settings
from qa_service.storage import paging
from qa_service.storage.memory import MemoryRepository
from qa_service.storage.repository import NewCall, Scope
from qa_service.storage.views import Filters
from tests.paging_support import walk, walk_api
from tests.test_teams import START, TEAM_A, TEAM_B, VENDOR_A, VENDOR_B, m
from tests.test_views import SEED, make_scorecard, seed_calls

P, F, NA, C, D = "pass", "fail", "na", "confirm", "dismiss"
CALLS = ("a1", "a2", "a3", "a4", "b1")
# The machine (from tests.test_views.SEED):
#   a1: greeting P, identity P, disclosure P,  next_steps P; no violation
#   a2: greeting P, identity P, disclosure na, next_steps P; guarantee
#   a3: greeting P, identity F, disclosure P,  next_steps F; fee-amount
#   a4: greeting F, identity P, disclosure P,  next_steps P; fee-amount
#   b1: greeting P, identity P, disclosure F,  next_steps F; no violation
# Designed answers of reviewers r1, r2, r3 per call: greeting, identity, disclosure, next_steps, violations.
GREETING = {"a1": (P, P, P), "a2": (P, P, F), "a3": (P, F, F), "a4": (F, F, F), "b1": (P, P, P)}
IDENTITY = {"a1": P, "a2": P, "a3": F, "a4": P, "b1": P}  # all three give the machine's answer
NEXT = {"a1": P, "a2": P, "a3": F, "a4": P, "b1": F}      # all three give the machine's answer
VIOLATIONS = {"a2": {"guarantee": (C, C, D)}, "a3": {"fee-amount": (C, C, C)},
              "a4": {"fee-amount": (C, D, D)}, "a1": {}, "b1": {}}


def sheet(call: str, r: int) -> dict:
    """Reviewer r's (0, 1, 2) answers for a call; everyone says the disclosure passed on every call."""
    return {"criteria": {"greeting": GREETING[call][r], "identity": IDENTITY[call], "disclosure": P,
                         "next_steps": NEXT[call]},
            "violations": {v: answers[r] for v, answers in VIOLATIONS[call].items()}}


# Worked by hand (Fleiss: P_i = (sum n_ij^2 - n) / (n (n - 1)), P_e = sum p_j^2):
# greeting: P_i = 1, 1/3, 1/3, 1, 1 -> P-bar = 11/15; p = 9/15 pass, 6/15 fail -> P_e = 0.52;
#   kappa = (11/15 - 0.52) / 0.48 = 4/9; unanimous on 3 of 5 calls.
#   Machine P P P F P: r1 5/5, r2 4/5, r3 3/5, all answers 12/15; the majority (P P F F P) matches on 4/5.
# identity: unanimous everywhere; p = 12/15, 3/15 -> P_e = 0.68 -> kappa = 1.
# disclosure: every answer "pass" -> P_e = 1, kappa undefined (None); matches the machine on 3 of 5 calls.
# guarantee (a2 only): P_i = 1/3; p = 2/3, 1/3 -> P_e = 5/9 -> kappa = (1/3 - 5/9) / (4/9) = -0.5.
# fee-amount (a3, a4): P_i = 1, 1/3 -> P-bar = 2/3; p = 4/6, 2/6 -> kappa = (2/3 - 5/9) / (4/9) = 0.25.
# Each reviewer against the machine over all 23 answers: r1 5+5+3+5+1+2 = 21, r2 4+5+3+5+1+1 = 19,
#   r3 3+5+3+5+0+1 = 17.
EXPECTED = {
    ("criterion", "greeting"): dict(percent_agreement=round(11 / 15, 4), kappa=round(4 / 9, 4), unanimous=0.6,
                                    machine_agreement=0.8, group_machine_agreement=0.8),
    ("criterion", "identity"): dict(percent_agreement=1.0, kappa=1.0, unanimous=1.0, machine_agreement=1.0),
    ("criterion", "disclosure"): dict(percent_agreement=1.0, kappa=None, machine_agreement=0.6),
    ("criterion", "next_steps"): dict(percent_agreement=1.0, kappa=1.0, machine_agreement=1.0),
    ("violation", "guarantee"): dict(percent_agreement=round(1 / 3, 4), kappa=-0.5, calls=1,
                                     machine_agreement=round(2 / 3, 4)),
    ("violation", "fee-amount"): dict(percent_agreement=round(2 / 3, 4), kappa=0.25, calls=2,
                                      machine_agreement=round(4 / 6, 4)),
}


@pytest.fixture
def site(database_url, tmp_path):
    settings = Settings(database_url=database_url, storage_dir=tmp_path / "storage",
                        model_cache_dir=tmp_path / "models", redis_url="redis://127.0.0.1:1/0",
                        review_share=1.0)
    app = create_app(settings)
    repo = app.state.repo
    ids = seed_calls(repo)
    keys = {}
    for who, role in (("lead", "qa"), ("r1", "qa"), ("r2", "qa"), ("r3", "admin"), ("other", "qa"),
                      ("sup", "supervisor")):
        keys[who] = issue_key(repo, role, f"{who} person")
    yield app, repo, ids, keys
    repo.dispose()


def client(app, keys, who: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {keys[who][1]}"})


def test_three_reviewers_five_calls_blind_then_agreement(site):
    app, repo, ids, keys = site
    lead, r = client(app, keys, "lead"), [client(app, keys, w) for w in ("r1", "r2", "r3")]
    totals_before = repo.views.totals(Filters())
    made = lead.post("/v1/calibrations", json={
        "name": "November calibration", "calls": [ids[c] for c in CALLS],
        "reviewers": [keys["r1"][0].id, "r2 person", "r3 person"]})
    assert made.status_code == 201, made.text
    session = made.json()
    sid = session["id"]
    assert session["status"] == "open" and [x["name"] for x in session["reviewers"]] == [
        "r1 person", "r2 person", "r3 person"]
    # The questions carry none of the machine's verdicts on criteria.
    first = session["calls_detail"][0]
    assert {q["id"] for q in first["questions"]["criteria"]} == {"greeting", "identity", "disclosure",
                                                                 "next_steps"}
    assert all(set(q) == {"id", "title", "section"} for q in first["questions"]["criteria"])
    assert "machine" not in first and session["agreement"] is None

    def put(n: int, call: str, body: dict | None = None):
        return r[n].put(f"/v1/calibrations/{sid}/calls/{ids[call]}/answers", json=body or sheet(call, n))

    # A sheet must answer every item with an allowed answer.
    bad = put(0, "a2", {"criteria": {"greeting": "maybe"}, "violations": {}})
    assert bad.status_code == 422
    assert "no answer for criterion identity" in bad.json()["detail"]
    assert "'maybe' is not one of pass, fail, na" in bad.json()["detail"]
    assert "no answer for violation guarantee" in bad.json()["detail"]
    # Only the session's reviewers answer; supervisors cannot answer at all.
    assert client(app, keys, "other").put(f"/v1/calibrations/{sid}/calls/{ids['a1']}/answers",
                                          json=sheet("a1", 0)).status_code == 403
    assert client(app, keys, "sup").put(f"/v1/calibrations/{sid}/calls/{ids['a1']}/answers",
                                        json=sheet("a1", 0)).status_code == 403

    for n in (0, 1):
        for call in CALLS:
            assert put(n, call).status_code == 200
    for call in CALLS[:4]:
        assert put(2, call).json()["revealed"] is False
    # Before the reveal a reviewer reads only their own answers.
    for n in (0, 1, 2):
        seen = r[n].get(f"/v1/calibrations/{sid}").json()
        assert seen["status"] == "open" and seen["agreement"] is None
        for entry, call in zip(seen["calls_detail"], CALLS, strict=True):
            assert "answers" not in entry and "machine" not in entry
            mine = entry["your_answers"]
            if n == 2 and call == "b1":
                assert mine is None
            else:
                assert mine["criteria"]["greeting"] == GREETING[call][n]
                assert mine["reviewer_key_id"] == keys[f"r{n + 1}"][0].id
        assert [x["sheets"] for x in seen["reviewers"]] == [5, 5, 4]
    # The lead, who is no reviewer, sees the progress and nobody's answers.
    progress = lead.get(f"/v1/calibrations/{sid}").json()
    assert all(e["your_answers"] is None and "answers" not in e for e in progress["calls_detail"])
    # r1 changes their mind on a1 before the reveal, then back: the latest sheet stands.
    assert put(0, "a1", {**sheet("a1", 0), "criteria": {**sheet("a1", 0)["criteria"], "greeting": F}}
               ).status_code == 200
    assert put(0, "a1").status_code == 200

    last = put(2, "b1")
    assert last.json()["revealed"] is True
    result = r[0].get(f"/v1/calibrations/{sid}").json()
    assert result["status"] == "closed" and result["closed_by"] == calibration.ALL_SENT
    figures = {(i["kind"], i["id"]): i for i in result["agreement"]["items"]}
    for item, expected in EXPECTED.items():
        for field, value in expected.items():
            assert figures[item][field] == value, (item, field)
    greeting = figures[("criterion", "greeting")]
    assert greeting["reviewers_with_machine"] == {keys["r1"][0].id: 1.0, keys["r2"][0].id: 0.8,
                                                  keys["r3"][0].id: 0.6}
    by_reviewer = {x["name"]: (x["answers"], x["machine_agreement"])
                   for x in result["agreement"]["reviewers"]}
    assert by_reviewer == {"r1 person": (23, round(21 / 23, 4)), "r2 person": (23, round(19 / 23, 4)),
                           "r3 person": (23, round(17 / 23, 4))}
    assert result["agreement"]["overall"]["answers"] == 69
    # After the reveal everyone's answers and the machine's verdicts show; nothing changes any more.
    a2 = next(e for e in result["calls_detail"] if e["call_id"] == ids["a2"])
    assert a2["machine"]["criterion:disclosure"] == NA and a2["machine"]["violation:guarantee"] == C
    assert sorted(x["criteria"]["greeting"] for x in a2["answers"]) == [F, P, P]
    assert put(0, "a1").status_code == 409
    # Practice only: no review, no reviewed verdict, the same aggregates.
    assert all(repo.reviews.for_call(ids[c]) == [] for c in CALLS)
    assert repo.views.totals(Filters()) == totals_before
    listed = client(app, keys, "sup").get("/v1/calibrations").json()
    assert listed["count"] == 1 and listed["sessions"][0]["revealed"] is True


def test_a_session_is_checked_and_qa_can_close_it_early(site):
    app, repo, ids, keys = site
    lead = client(app, keys, "lead")
    refused = lead.post("/v1/calibrations", json={"name": "x", "calls": [ids["a1"]],
                                                  "reviewers": ["r1 person", "sup person"]})
    assert refused.status_code == 422
    assert "supervisor key; reviewers are QA or admin" in refused.json()["detail"]
    unknown = lead.post("/v1/calibrations", json={"name": "x", "calls": [ids["a1"]],
                                                  "reviewers": ["r1 person", "nobody"]})
    assert unknown.status_code == 422 and "'nobody'" in unknown.json()["detail"]
    assert lead.post("/v1/calibrations", json={"name": "x", "calls": [ids["queued"]],
                                               "reviewers": ["r1 person", "r2 person"]}).status_code == 422
    assert client(app, keys, "sup").post("/v1/calibrations", json={
        "name": "x", "calls": [ids["a1"]], "reviewers": ["r1 person", "r2 person"]}).status_code == 403
    sid = lead.post("/v1/calibrations", json={"name": "short", "calls": [ids["a1"], ids["b1"]],
                                              "reviewers": ["r1 person", "r2 person"]}).json()["id"]
    r1 = client(app, keys, "r1")
    assert r1.put(f"/v1/calibrations/{sid}/calls/{ids['a1']}/answers", json=sheet("a1", 0)).status_code == 200
    assert r1.put(f"/v1/calibrations/{sid}/calls/{ids['a3']}/answers",
                  json=sheet("a3", 0)).status_code == 404  # not in this session
    closed = lead.post(f"/v1/calibrations/{sid}/close").json()
    assert closed["status"] == "closed" and closed["closed_by"] == "lead person"
    # One answer per call: nothing to compare among reviewers, but r1 against the machine still reads.
    greeting = next(i for i in closed["agreement"]["items"] if i["id"] == "greeting")
    assert greeting["calls"] == 0 and greeting["kappa"] is None and greeting["machine_agreement"] == 1.0
    assert client(app, keys, "r2").put(f"/v1/calibrations/{sid}/calls/{ids['b1']}/answers",
                                       json=sheet("b1", 1)).status_code == 409


def _sessions_of_both_teams(repo, ids, lead) -> list[CalibrationSession]:
    """Nine sessions opened in threes at the same moment: over team A's calls, over both teams', over
    team B's, in turn; newest first by (created time, id)."""
    teams.put_memberships(store=repo, items=[m("agent-a", TEAM_A, VENDOR_A, START),
                                             m("agent-b", TEAM_B, VENDOR_B, START)])
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    over = (("a1", "a2"), ("a1", "b1"), ("b1",))
    made = []
    for n in range(9):
        calls = tuple(SessionCall(call_id=ids[c], scorecard_version=1, position=i)
                      for i, c in enumerate(over[n % 3]))
        made.append(repo.calibration.add_session(CalibrationSession(
            id=str(uuid.uuid4()), name=f"s{n}", status="open", created_by_key_id=lead.id,
            created_by_name="lead person", created_at=t0 + timedelta(minutes=n // 3), calls=calls,
            reviewers=(Reviewer(key_id=lead.id, name="lead person"),))))
    return sorted(made, key=lambda x: (x.created_at, x.id), reverse=True)


def test_session_pages_hold_every_session_once_and_a_scoped_key_only_its_own(site):
    app, repo, ids, keys = site
    made = _sessions_of_both_teams(repo, ids, keys["lead"][0])
    alpha = issue_key(repo, "supervisor", "alpha lead", Scope(teams=(TEAM_A,)))
    everyone = walk_api(client(app, keys, "sup"), "/v1/calibrations", "sessions")
    assert [x["id"] for x in everyone] == [x.id for x in made]
    scoped = walk_api(TestClient(app, headers={"Authorization": f"Bearer {alpha[1]}"}), "/v1/calibrations",
                      "sessions")
    assert [x["id"] for x in scoped] == [x.id for x in made if x.name in ("s0", "s3", "s6")]
    pages = walk(lambda c: calibration.list_sessions(store=repo, key=alpha[0], cursor=c, page_size=2))
    assert [x["id"] for x in pages] == [x["id"] for x in scoped]
    sup = client(app, keys, "sup")
    for cursor in (paging.encode("rescores", (made[0].created_at, made[0].id)),
                   paging.encode("calibrations", (made[0].created_at, "not-an-id")), "garbled"):
        r = sup.get("/v1/calibrations", params={"cursor": cursor})
        assert r.status_code == 422 and "not one this listing gave" in r.json()["detail"], cursor
    r = sup.get("/v1/calibrations", params={"limit": 5})
    assert r.status_code == 422 and "page_size" in r.json()["detail"]


def test_fleiss_kappa_on_the_textbook_table():
    """Fleiss (1971) as Wikipedia works it: 10 subjects, 14 raters, 5 categories: P-bar 0.378, kappa 0.210."""
    table = [(0, 0, 0, 0, 14), (0, 2, 6, 4, 2), (0, 0, 3, 5, 6), (0, 3, 9, 2, 0), (2, 2, 8, 1, 1),
             (7, 7, 0, 0, 0), (3, 2, 6, 3, 0), (2, 5, 3, 2, 2), (6, 5, 2, 1, 0), (0, 2, 2, 3, 7)]
    subjects = [[str(j) for j, n in enumerate(row) for _ in range(n)] for row in table]
    percent, unanimous, kappa, read = fleiss(subjects)
    assert (round(percent, 3), round(kappa, 3), unanimous, read) == (0.378, 0.210, 0.1, 10)
    assert fleiss([["pass"], []]) == (None, None, None, 0)


def test_the_figures_leave_out_reviewers_and_calls_that_are_not_in_the_session():
    card = make_scorecard(SEED[0], "ext-a1")
    at = datetime.now(UTC)
    session = CalibrationSession(id="s", name="s", status="closed", created_by_key_id=None,
                                 created_by_name="x", created_at=at, calls=(SessionCall("c1", 1, 0),),
                                 reviewers=(Reviewer("k1", "one"), Reviewer("k2", "two")))
    answers = {"greeting": P, "identity": P, "disclosure": P, "next_steps": F}
    sheets = [Sheet("s", "c1", k, answers, {}, at) for k in ("k1", "k2", "stranger")] + \
             [Sheet("s", "c9", "k1", answers, {}, at)]
    result = agreement(session, {"c1": card}, sheets)
    assert result.overall.answers == 8
    next_steps = next(i for i in result.items if i.id == "next_steps")
    assert next_steps.machine_agreement == 0.0 and next_steps.percent_agreement == 1.0


def test_the_memory_twin_keeps_sessions_like_the_database():
    store = MemoryRepository()
    call_id = "00000000-0000-4000-8000-0000000000a1"
    store.add_call(NewCall(id=call_id, agent_id="agent-a", call_date=SEED[0].day, rubric_id="intake",
                           rubric_version="1", policy_pack_id="fees", policy_pack_version="2026-10"))
    store.finish_call(call_id, make_scorecard(SEED[0], "ext-a1"))
    lead = store.add_key("lead", "qa", "0" * 64)
    one, two = store.add_key("one", "qa", "1" * 64), store.add_key("two", "qa", "2" * 64)
    session = calibration.create_session(store=store, key=lead, name="m", calls=[call_id],
                                         reviewers=["one", "two"])
    with pytest.raises(Forbidden):
        calibration.submit_sheet(store=store, key=lead, session_id=session.id, call_id=call_id,
                                 criteria=sheet("a1", 0)["criteria"], violations={})
    for key in (one, two):
        calibration.submit_sheet(store=store, key=key, session_id=session.id, call_id=call_id,
                                 criteria=sheet("a1", 0)["criteria"], violations={})
    view = calibration.session_view(store=store, key=lead, session_id=session.id)
    assert view["status"] == "closed" and view["agreement"]["overall"]["percent_agreement"] == 1.0
    with pytest.raises(Conflict):
        calibration.submit_sheet(store=store, key=one, session_id=session.id, call_id=call_id,
                                 criteria=sheet("a1", 0)["criteria"], violations={})
    # Pages in memory follow the database's order, ties broken by the id.
    memory = MemoryRepository()
    made = _sessions_of_both_teams(memory, seed_calls(memory), lead)
    alpha = memory.add_key("alpha", "supervisor", "3" * 64, scope=Scope(teams=(TEAM_A,)))
    assert [x["id"] for x in walk(lambda c: calibration.list_sessions(store=memory, key=lead, cursor=c,
                                                                       page_size=2))] == [x.id for x in made]
    assert [x["name"] for x in walk(lambda c: calibration.list_sessions(store=memory, key=alpha, cursor=c,
                                                                         page_size=2))] == ["s6", "s3", "s0"]


def test_the_pages_list_score_with_a_form_token_and_show_the_results(sqlite_url, tmp_path, monkeypatch):
    from tests.test_web import form_token, sign_in

    settings = Settings(database_url=sqlite_url, storage_dir=tmp_path / "storage",
                        model_cache_dir=tmp_path / "models", redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings)
    repo = app.state.repo
    try:
        ids = seed_calls(repo)
        keys = {w: issue_key(repo, "qa", f"{w} person") for w in ("lead", "r1", "r2")}
        calibration.create_session(store=repo, key=keys["lead"][0], name="Earlier check", calls=[ids["a1"]],
                                   reviewers=["r1 person", "r2 person"])
        sid = calibration.create_session(store=repo, key=keys["lead"][0], name="Page check",
                                         calls=[ids["a2"]], reviewers=["r1 person", "r2 person"]).id
        web = {w: TestClient(app, base_url="http://testserver") for w in ("lead", "r1", "r2")}
        for w, c in web.items():
            assert sign_in(c, keys[w][1]).status_code == 303
        monkeypatch.setattr("qa_service.web.calibration.PAGE_SIZE", 1)
        listing = web["r1"].get("/calibrations")
        assert listing.status_code == 200
        assert "Page check" in listing.text and "yours to score: 1" in listing.text
        assert "Earlier check" not in listing.text
        link = re.search(r'<a href="([^"]+)" rel="next">Next page', listing.text).group(1)
        link = link.replace("&amp;", "&")
        older = web["r1"].get(f"/calibrations{link}").text
        assert "Earlier check" in older and "Page check" not in older and 'rel="next"' not in older
        garbled = web["r1"].get("/calibrations", params={"cursor": "garbled"}).text
        assert "not one this listing gave" in garbled and "Page check" in garbled
        form = web["r1"].get(f"/calibrations/{sid}/calls/{ids['a2']}")
        assert form.status_code == 200
        assert 'name="c:greeting"' in form.text and 'name="v:guarantee"' in form.text
        # Blind: no machine verdict, score or evidence reason on the form.
        assert "not said by the agent" not in form.text and " checked" not in form.text
        assert web["lead"].get(f"/calibrations/{sid}/calls/{ids['a2']}").status_code == 403  # no reviewer
        answers = {f"c:{k}": v for k, v in sheet("a2", 0)["criteria"].items()} | {"v:guarantee": C}
        url = f"/calibrations/{sid}/calls/{ids['a2']}"
        assert web["r1"].post(url, data=answers, follow_redirects=False).status_code == 403  # no token
        sent = web["r1"].post(url, data={**answers, "csrf": form_token(form.text)}, follow_redirects=False)
        assert sent.status_code == 303 and sent.headers["location"] == f"/calibrations/{sid}"
        assert repo.calibration.sheets(sid)[0].violations == {"guarantee": C}
        before = web["r2"].get(f"/calibrations/{sid}")
        assert "r1 person: 1 of 1" in before.text and 'id="agreement"' not in before.text
        form2 = web["r2"].get(url)
        bad = web["r2"].post(url, data={"c:greeting": P, "csrf": form_token(form2.text)},
                             follow_redirects=False)
        assert bad.status_code == 422 and "no answer for criterion identity" in bad.text
        answers2 = {f"c:{k}": v for k, v in sheet("a2", 2)["criteria"].items()} | {"v:guarantee": D}
        assert web["r2"].post(url, data={**answers2, "csrf": form_token(form2.text)},
                              follow_redirects=False).status_code == 303
        results = web["lead"].get(f"/calibrations/{sid}")
        assert 'id="agreement"' in results.text and "Each reviewer against the machine" in results.text
        # greeting: r1 pass, r2 fail on one call -> 0% agreement among pairs.
        row = results.text.split('data-item="criterion:greeting"')[1].split("</tr>")[0]
        assert '<td class="num">0%</td>' in row
    finally:
        repo.dispose()
