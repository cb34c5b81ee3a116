"""What an outdated-policy mention costs: the pack's `outdated` (note, deduct, auto_fail), per fact and as
the pack default, through scoring, reviews, the review queue, aggregates and the refresher list."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from qa_service.records import CallMeta, Segment, Transcript, Word
from qa_service.review import Review, apply_reviews, needs_review, outdated_count
from qa_service.rules.load import RulesFileError, load_policy_pack, load_rubric

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
POLICIES = (SAMPLES / "policies.yaml").read_text()

# The permit fee was 380 euros until 2026-07-31 and is 420 since; faxed applications ended on 2026-02-01.
CALL = """Agent: Thanks for calling Harbourline, my name is Sam, and this call is recorded.
Customer: Hi, how much is the permit?
Agent: First I need to confirm your identity. Do I have your permission to use your details?
Customer: Yes.
Agent: The permit fee is three hundred and eighty euros. It usually takes six weeks.
Customer: Can I send it in?
Agent: Yes, you can fax your application to us.
Agent: Again, the permit fee is 380 euros.
Agent: Is there anything else I can help you with?
"""
CALL_DATE = date(2026, 10, 20)


def pack_text(default: str | None = None, **per_fact: str) -> str:
    """The sample policy pack with a pack-level `outdated` and per-fact overrides (YAML flow values)."""
    text = POLICIES
    if default is not None:
        text = text.replace("facts:", f"outdated: {default}\nfacts:", 1)
    for fact, value in per_fact.items():
        fact = fact.replace("_", "-")
        text = text.replace(f"  - id: {fact}\n", f"  - id: {fact}\n    outdated: {value}\n", 1)
    return text


def pack(default: str | None = None, **per_fact: str) -> Any:
    return load_policy_pack(pack_text(default, **per_fact), name="policies.yaml")


# -- the policy pack format ----------------------------------------------------------------------

@pytest.mark.parametrize(("default", "per_fact", "fee", "fax"), [
    (None, {}, ("note", 0.0), ("note", 0.0)),  # a v1 pack means note
    ("note", {}, ("note", 0.0), ("note", 0.0)),
    ("{deduct: 10}", {}, ("deduct", 10.0), ("deduct", 10.0)),
    ("auto_fail", {"fax_submissions_ended": "note"}, ("auto_fail", 0.0), ("note", 0.0)),
    (None, {"permit_fee": "{deduct: 12.5}"}, ("deduct", 12.5), ("note", 0.0)),
])
def test_the_pack_default_and_a_fact_override(default, per_fact, fee, fax) -> None:
    p = pack(default, **per_fact)
    for fact, want in (("permit-fee", fee), ("fax-submissions-ended", fax)):
        got = p.consequence(fact)
        assert (got.kind, got.points) == want


@pytest.mark.parametrize(("default", "per_fact", "line", "words"), [
    ("fail", {}, 5, "got 'fail'"),
    ("{deduct: 0}", {}, 5, "got deduct: 0"),
    ("{deduct: 150}", {}, 5, "got deduct: 150"),
    ("{deduct: ten}", {}, 5, "got deduct: 'ten'"),
    ("{deduct: 5, auto_fail: true}", {}, 5, "got {'deduct': 5"),
    ("{kind: note, points: 5}", {}, 5, "points go with `deduct` only"),
    (None, {"permit_fee": "auto-fail"}, 6, "facts[0].outdated"),
    (None, {"fax_submissions_ended": "[note]"}, 24, "facts[2].outdated"),
])
def test_a_bad_consequence_is_a_clear_error_with_its_line(default, per_fact, line, words) -> None:
    with pytest.raises(RulesFileError) as err:
        pack(default, **per_fact)
    message = str(err.value)
    assert f"policies.yaml:{line}:" in message and words in message, message
    assert "`note`, `auto_fail` or `{deduct: POINTS}`" in message


# -- scoring a transcript through the pipeline -------------------------------------------------------

@pytest.fixture(scope="module")
def engines():
    from qa_service.pipeline import load_engines
    from qa_service.settings import Settings

    return load_engines(Settings(), speech=False)


def scored(engines, policies, text: str = CALL) -> dict[str, Any]:
    from qa_service.intake import parse_transcript
    from qa_service.pipeline import process_transcript

    transcript = parse_transcript(text.encode(), filename="call.txt")
    return process_transcript(transcript, CallMeta("call-1", "agent-sam", CALL_DATE),
                              load_rubric(SAMPLES / "rubric.yaml"), policies, engines).to_dict()


def costs(card: dict[str, Any]) -> dict[str, tuple[str, float, bool]]:
    return {v["id"]: (v["consequence"], v["deducted_points"], v["auto_fail"]) for v in card["violations"]
            if v["kind"] == "outdated_policy"}


@pytest.mark.parametrize(("default", "per_fact", "score", "passed", "auto_fail", "fee", "fax"), [
    # Today's packs: listed, no cost; the call still passes with 100.
    (None, {}, 100.0, True, False, ("note", 0.0, False), ("note", 0.0, False)),
    # 10 points per fact, once per fact: the fee said twice costs 10, the fax 10.
    ("{deduct: 10}", {}, 80.0, True, False, ("deduct", 10.0, False), ("deduct", 10.0, False)),
    # 30 points for the fee: 70 is under the rubric's pass mark of 75.
    ("{deduct: 10}", {"permit_fee": "{deduct: 30}"}, 60.0, False, False, ("deduct", 30.0, False),
     ("deduct", 10.0, False)),
    ("auto_fail", {}, 100.0, False, True, ("auto_fail", 0.0, True), ("auto_fail", 0.0, True)),
    # The pack fails outdated mentions, but a withdrawn channel is only noted.
    ("auto_fail", {"fax_submissions_ended": "note"}, 100.0, False, True, ("auto_fail", 0.0, True),
     ("note", 0.0, False)),
    ("note", {"fax_submissions_ended": "{deduct: 5}"}, 95.0, True, False, ("note", 0.0, False),
     ("deduct", 5.0, False)),
])
def test_a_call_quoting_a_superseded_fee_costs_what_its_pack_says(engines, default, per_fact, score, passed,
                                                                  auto_fail, fee, fax) -> None:
    card = scored(engines, pack(default, **per_fact))
    assert [v["id"] for v in card["violations"]].count("permit-fee") == 2  # said twice
    assert costs(card) == {"permit-fee": fee, "fax-submissions-ended": fax}
    assert (card["score"], card["passed"], card["auto_fail"]) == (score, passed, auto_fail)
    assert card["deducted_points"] == round(100.0 - score, 2)
    assert card["provisional"] is False
    # Whatever it costs, the call goes to review.
    assert outdated_count(card) == 3
    assert needs_review("call-1", "agent-sam", CALL_DATE, card["auto_fail"], 0.0, outdated=True)
    # A review re-totals the stored card on its own and finds the same score and verdict.
    again = apply_reviews(card, [])["review"]
    assert (again["reviewed_score"], again["reviewed_passed"]) == (score, passed)


def test_a_call_quoting_the_current_fee_costs_nothing(engines) -> None:
    card = scored(engines, pack("auto_fail"), CALL.replace("three hundred and eighty", "four hundred and "
                                                           "twenty").replace("380", "420")
                  .replace("Yes, you can fax your application to us.", "You can apply online."))
    assert card["violations"] == [] and (card["score"], card["passed"], card["deducted_points"]) == \
        (100.0, True, 0.0)


def said(speaker: str, start: float, *words: tuple[str, float]) -> Segment:
    timed = tuple(Word(" " + w, start + k * 0.3, start + k * 0.3 + 0.25, p) for k, (w, p) in enumerate(words))
    return Segment(speaker, start, start + 0.3 * len(words), " ".join(w for w, _ in words), timed)  # type: ignore[arg-type]


def test_an_outdated_mention_heard_with_doubt_makes_the_fail_provisional(engines) -> None:
    from qa_service.stages.score import score

    def sure(start: float, text: str) -> Segment:
        return said("agent", start, *((w, 0.95) for w in text.split()))

    opening = [sure(0.0, "Thanks for calling Harbourline, my name is Sam, and this call is recorded."),
               sure(4.0, "First I need to confirm your identity. Do I have your permission to use your "
                         "details?"),
               sure(30.0, "Is there anything else I can help you with?")]
    weak = said("agent", 10.0, ("you", 0.4), ("can", 0.4), ("fax", 0.35), ("your", 0.4), ("application", 0.4))
    firm = sure(10.0, "you can fax your application")
    rubric = load_rubric(SAMPLES / "rubric.yaml")
    for segment, provisional in ((weak, True), (firm, False)):
        transcript = Transcript(segments=(*opening[:2], segment, opening[2]), duration_s=40.0, language="en",
                                source="text")
        result = score(transcript, rubric, pack("auto_fail"), engines.nlp, CALL_DATE)
        [v] = result.violations
        assert (v.id, v.auto_fail, bool(v.doubt)) == ("fax-submissions-ended", True, provisional)
        assert (result.passed, result.auto_fail, result.provisional) == (False, True, provisional)
        # Points taken off on weak evidence make a FAIL provisional too, when they decide it.
        noted = score(transcript, rubric, pack(), engines.nlp, CALL_DATE)
        assert noted.passed and noted.score - 10 < rubric.pass_mark
        result = score(transcript, rubric, pack("{deduct: 10}"), engines.nlp, CALL_DATE)
        assert result.score == pytest.approx(noted.score - 10)
        assert (result.passed, result.provisional) == (False, provisional)


# -- reviews re-total a stored card ----------------------------------------------------------------

T0 = "2026-10-21T09:00:00+00:00"


def review(target: str, target_id: str, action: str, n: int = 1) -> Review:
    from datetime import datetime, timedelta

    return Review(call_id="c", scorecard_version=1, target_kind=target, target_id=target_id,  # type: ignore[arg-type]
                  action=action, reason="listened", reviewer_key_id="k", reviewer_name="Ana",  # type: ignore[arg-type]
                  created_at=datetime.fromisoformat(T0) + timedelta(minutes=n))


def test_dismissing_an_outdated_violation_gives_its_cost_back(engines) -> None:
    card = scored(engines, pack("{deduct: 10}", permit_fee="auto_fail"))
    assert (card["score"], card["passed"], card["auto_fail"]) == (90.0, False, True)
    fee_gone = apply_reviews(card, [review("violation", "permit-fee", "dismiss")])["review"]
    assert (fee_gone["reviewed_score"], fee_gone["reviewed_passed"], fee_gone["reviewed_auto_fail"]) == \
        (90.0, True, False)
    both_gone = apply_reviews(card, [review("violation", "permit-fee", "dismiss"),
                                     review("violation", "fax-submissions-ended", "dismiss", 2)])["review"]
    assert (both_gone["reviewed_score"], both_gone["reviewed_deducted_points"]) == (100.0, 0.0)
    assert both_gone["violations"] == []
    confirmed = apply_reviews(card, [review("violation", "fax-submissions-ended", "confirm")])["review"]
    assert (confirmed["reviewed_score"], confirmed["reviewed_passed"]) == (90.0, False)
    [item] = confirmed["items"]
    assert (item["automatic"], item["reviewed"]) == ("violation", "confirmed")
    restored = apply_reviews(card, [review("violation", "permit-fee", "dismiss"),
                                    review("violation", "permit-fee", "restore", 2)])["review"]
    assert (restored["reviewed_score"], restored["reviewed_passed"]) == (90.0, False)


UNSURE = {"id": "permit-fee", "kind": "outdated_policy", "policy_id": "permit-fee", "title": "Fee",
          "auto_fail": False, "consequence": "deduct", "deducted_points": 15.0,
          "detail": "stated 380 euros for residence permit application fee; not counted: the recogniser was "
                    "unsure of the number (confidence 0.21)",
          "start": 1.0, "end": 2.0, "speaker": "agent", "text": "the fee is three eighty", "segments": [0],
          "doubt": "the recogniser was unsure of the number (confidence 0.21)"}
CRITERIA = [{"id": "greeting", "section": "s", "passed": True, "applicable": True, "points": 10.0,
             "max_points": 10.0}]


def test_a_confirmed_outdated_item_to_check_costs_what_its_pack_says() -> None:
    card = {"score": 100.0, "passed": True, "auto_fail": False, "pass_mark": 80.0, "criteria": CRITERIA,
            "violations": [], "to_check": [UNSURE]}
    confirmed = apply_reviews(card, [review("to_check", "permit-fee", "confirm")])["review"]
    assert (confirmed["reviewed_score"], confirmed["reviewed_passed"]) == (85.0, True)
    assert confirmed["violations"][0]["deducted_points"] == 15.0
    # Confirmed alongside a counted mention of the same fact, its points come off once.
    both = {**card, "score": 85.0, "deducted_points": 15.0,
            "violations": [{**UNSURE, "doubt": "", "detail": "stated 380"}]}
    assert apply_reviews(both, [review("to_check", "permit-fee", "confirm")])["review"]["reviewed_score"] \
        == 85.0


# -- storage: the queue's count, and the migration that fills it --------------------------------------

def test_the_migration_counts_outdated_violations_of_stored_scorecards(database_url) -> None:
    import sqlalchemy as sa

    from qa_service.storage import open_repository
    from qa_service.storage import tables as t
    from qa_service.storage.db import writing
    from tests.test_storage import engine_at_revision

    engine = engine_at_revision(database_url, "0010")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    violations = [[{"id": "fee", "kind": "outdated_policy"}, {"id": "fax", "kind": "outdated_policy"}],
                  [{"id": "promise", "kind": "prohibited"}], []]
    with writing(engine) as conn:
        for call_id, found in zip(ids, violations, strict=True):
            conn.execute(t.calls.insert().values(
                id=call_id, agent_id="a", call_date=CALL_DATE, rubric_id="r", rubric_version="1",
                policy_pack_id="p", policy_pack_version="1", status="done", source="upload",
                channels="auto", input_kind="transcript", created_at=sa.func.now(),
                updated_at=sa.func.now()))
            # Only the columns a 0010 database has (the count column has a server default only).
            conn.execute(t.scorecards.insert().values(
                call_id=call_id, version=1, agent_id="a", call_date=CALL_DATE, score=100.0, passed=True,
                auto_fail=False, rubric_id="r", rubric_version="1", rubric_sha256="",
                created_at=sa.func.now(),
                data={"violations": found, "to_check": [{"id": "x", "kind": "outdated_policy"}]}))
    engine.dispose()
    repo = open_repository(database_url)
    counts = {c.call_id: c.outdated for c in repo.reviews.queue_candidates()}
    assert [counts[i] for i in ids] == [2, 0, 0]
    repo.dispose()


# -- through the API: a transcript call, the queue, a review, the aggregates, the refresher list ------

@pytest.fixture
def api(make_settings, redis_url, redis_conn, engines):
    from qa_service.worker.context import WorkerContext, activate
    from tests.test_api import Api, seed_rules

    a = Api(make_settings(redis_url=redis_url), redis_conn)
    seed_rules(a.repo)
    activate(WorkerContext(settings=a.settings, store=a.repo, engines_loaded=engines))
    yield a
    activate(None)


def run_call(api, redis_conn, *, agent: str = "agent-sam", policy_version: str | None = None) -> str:
    from rq import SimpleWorker

    data = {"agent_id": agent, "call_date": CALL_DATE.isoformat(), "rubric_id": "harbourline-intake",
            "policy_pack_id": "valdoria-residence", "transcript": CALL}
    if policy_version:
        data["policy_pack_version"] = policy_version
    r = api.client.post("/v1/calls", headers=api.h(), data=data)
    assert r.status_code == 202, r.text
    SimpleWorker([api.queue], connection=redis_conn).work(burst=True)
    call_id = r.json()["id"]
    assert api.repo.get_call(call_id).status == "done"
    return call_id


def agent_line(api, agent: str) -> dict[str, Any]:
    body = api.client.get("/v1/agents?from=2026-10-01&to=2026-10-31", headers=api.h("supervisor")).json()
    return next(a for a in body["agents"] if a["agent_id"] == agent)


def test_through_the_api_an_outdated_fee_costs_points_queues_the_call_and_a_dismissal_gives_them_back(
        api, redis_conn) -> None:
    noted = run_call(api, redis_conn, agent="agent-lee")  # the sample pack says nothing: note
    upload = api.client.post("/v1/policy-packs", headers=api.h(),
                             content=pack_text("{deduct: 10}", permit_fee="{deduct: 20}").replace(
                                 'version: "2026-10-01"', 'version: "2026-10-02"'))
    assert upload.status_code == 201, upload.text
    costly = run_call(api, redis_conn, policy_version="2026-10-02")

    card = api.client.get(f"/v1/calls/{costly}/scorecard", headers=api.h()).json()
    assert (card["score"], card["deducted_points"], card["passed"]) == (70.0, 30.0, False)
    assert {v["id"]: v["deducted_points"] for v in card["violations"]} == \
        {"permit-fee": 20.0, "fax-submissions-ended": 10.0}
    noted_card = api.client.get(f"/v1/calls/{noted}/scorecard", headers=api.h()).json()
    assert (noted_card["score"], noted_card["passed"]) == (100.0, True)
    assert {v["consequence"] for v in noted_card["violations"]} == {"note"}

    queue = api.client.get("/v1/review-queue", headers=api.h()).json()
    queued = {c["call_id"]: c for c in queue["calls"]}
    assert queued[costly]["why"] == "outdated_policy" and queued[costly]["outdated"] == 3
    assert queued[noted]["why"] == "outdated_policy", "a mention that only costs a note is queued too"
    assert agent_line(api, "agent-sam")["mean_score"] == 70.0

    # The fee was a slip the customer corrected at once: the reviewer dismisses it, with a reason.
    r = api.client.post(f"/v1/calls/{costly}/reviews", headers=api.h(), json={
        "target": "violation", "id": "permit-fee", "action": "dismiss", "reason": "quoted as the old fee"})
    assert r.status_code == 201, r.text
    result = r.json()["result"]
    assert (result["reviewed_score"], result["reviewed_deducted_points"], result["reviewed_passed"]) == \
        (90.0, 10.0, True)
    line = agent_line(api, "agent-sam")
    assert (line["mean_score"], line["pass_rate"]) == (90.0, 1.0)
    assert costly not in {c["call_id"] for c in api.client.get("/v1/review-queue", headers=api.h()).json()[
        "calls"]}, "a reviewed call leaves the queue"
    # The other one is confirmed: it counts, and the refresher list says a reviewer confirmed it.
    r = api.client.post(f"/v1/calls/{costly}/reviews", headers=api.h(), json={
        "target": "violation", "id": "fax-submissions-ended", "action": "confirm", "reason": "heard it"})
    assert r.status_code == 201 and r.json()["result"]["reviewed_score"] == 90.0

    currency = api.client.get("/v1/policy-currency", headers=api.h("supervisor")).json()
    sam = currency["agents"]["agent-sam"]
    assert set(sam) == {"fax-submissions-ended"}, "a dismissed mention is not on the refresher list"
    assert [(m["call_id"], m["confirmed"], m["consequence"]) for m in sam["fax-submissions-ended"]] == \
        [(costly, True, "deduct")]
    lee = currency["agents"]["agent-lee"]
    assert {m["confirmed"] for ms in lee.values() for m in ms} == {False}


def test_a_confirmed_outdated_item_to_check_is_on_the_refresher_list(api) -> None:
    from tests.test_review import API_CARD

    call_id = api.client.post("/v1/calls", headers=api.h(), data={
        "agent_id": "agent-kim", "call_date": CALL_DATE.isoformat(), "rubric_id": "harbourline-intake",
        "policy_pack_id": "valdoria-residence", "transcript": CALL}).json()["id"]
    api.repo.start_call(call_id)
    api.repo.finish_call(call_id, {**API_CARD, "score": 100.0, "passed": True, "auto_fail": False,
                                   "pass_mark": 75.0, "violations": [], "to_check": [UNSURE],
                                   "criteria": [{**c, "passed": True, "points": c["max_points"]}
                                                for c in API_CARD["criteria"]]})
    before = api.client.get("/v1/policy-currency", headers=api.h("supervisor")).json()["agents"]
    assert "agent-kim" not in before, "an unconfirmed item to check is not on the list"

    r = api.client.post(f"/v1/calls/{call_id}/reviews", headers=api.h(), json={
        "target": "to_check", "id": "permit-fee", "action": "confirm", "reason": "380, clearly"})
    assert r.status_code == 201 and r.json()["result"]["reviewed_score"] == 85.0
    after = api.client.get("/v1/policy-currency", headers=api.h("supervisor")).json()["agents"]
    [mention] = after["agent-kim"]["permit-fee"]
    assert (mention["call_id"], mention["confirmed"], mention["consequence"]) == (call_id, True, "deduct")
    assert agent_line(api, "agent-kim")["mean_score"] == 85.0


def test_outdated_violations_are_confirmed_and_dismissed_from_the_call_page(api, redis_conn) -> None:
    from tests.test_review import signed_in_client
    from tests.test_web import form_token

    assert api.client.post("/v1/policy-packs", headers=api.h(), content=pack_text("{deduct: 10}").replace(
        'version: "2026-10-01"', 'version: "2026-10-02"')).status_code == 201
    call_id = run_call(api, redis_conn, policy_version="2026-10-02")
    qa = signed_in_client(api, "qa")
    page = qa.get(f"/calls/{call_id}").text
    assert 'id="deducted"' in page and "20 points for outdated policy" in page
    assert page.count("10 points</span>") == 3 and 'value="confirm">Confirm: it was said' in page
    form = {"target": "violation", "id": "fax-submissions-ended", "action": "dismiss",
            "reason": "the customer asked about fax; the agent said no", "csrf": form_token(page)}
    r = qa.post(f"/calls/{call_id}/reviews", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/calls/{call_id}#violations"
    page = qa.get(f"/calls/{call_id}").text
    assert 'data-review="violation-fax-submissions-ended"' in page
    assert 'id="shown-verdict" data-score="90"' in page
    form = {**form, "id": "permit-fee", "action": "confirm", "reason": "heard 380", "csrf": form_token(page)}
    assert qa.post(f"/calls/{call_id}/reviews", data=form, follow_redirects=False).status_code == 303
    page = qa.get(f"/calls/{call_id}").text
    assert "Reviewed: <strong>confirmed</strong>" in page
