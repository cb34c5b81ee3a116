"""Written conversations: turn times as dates and times, a conversation's channel, response-time criteria
(the longest wait for the agent and the first response), and their attainment in agent aggregates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from qa_service.errors import RulesError, TranscriptError
from qa_service.intake import parse_transcript, settle_channel
from qa_service.records import CallMeta, Segment
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.stages.response import duration_words, waits
from qa_service.storage.views import Filters
from tests.conftest import REPO_ROOT

SAMPLES = REPO_ROOT / "samples"
RUBRIC_CHAT = SAMPLES / "rubric-chat.yaml"
DAY = date(2026, 10, 14)
T0 = datetime(2026, 10, 14, 9, 0, 0, tzinfo=UTC)


def chat(*turns: tuple[str, float, str], channel: str | None = "chat", absolute: bool = True) -> bytes:
    """A JSON conversation; each turn is (speaker, seconds after T0, text)."""
    rows = []
    for speaker, seconds, text in turns:
        when: Any = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z") if absolute \
            else seconds
        rows.append({"speaker": speaker, "time" if absolute else "start": when, "text": text})
    doc: dict[str, Any] = {"turns": rows}
    if channel is not None:
        doc["channel"] = channel
    return json.dumps(doc).encode()


def with_reply_after(seconds: float, **kw: Any) -> bytes:
    """Greeting, a question, an answer after `seconds`, a closing: the wait that decides is `seconds`."""
    return chat(("agent", 0, "Thanks for contacting Harbourline Relocation, my name is Leo."),
                ("customer", 30, "Can I still fax the form?"),
                ("agent", 30 + seconds, "No, please use the online permit service; that is the next step."),
                ("customer", 40 + seconds, "Thanks."),
                ("agent", 60 + seconds, "Is there anything else I can help you with?"), **kw)


# -- parsing: dates and times, order, channel ---------------------------------------------------------

def test_iso_times_become_seconds_from_the_first_turn_and_may_span_days() -> None:
    t = parse_transcript(chat(("customer", 0, "Hello"), ("agent", 2 * 86400 + 5, "Sorry for the delay"),
                              channel="email"))
    assert [s.start for s in t.segments] == [0.0, 172805.0]
    assert t.started_at == T0 and t.channel == "email" and t.duration_s > 172805
    # Offsets are honoured: 11:00+02:00 is 09:00Z, three minutes before 09:03Z.
    t = parse_transcript(b'[{"speaker": "customer", "timestamp": "2026-10-14T11:00:00+02:00", "text": "a"},'
                         b' {"speaker": "agent", "timestamp": "2026-10-14T09:03:00Z", "text": "b"}]')
    assert [s.start for s in t.segments] == [0.0, 180.0]


def test_iso_times_in_plain_text_lines() -> None:
    t = parse_transcript("[2026-10-14T09:00:00Z] Customer: Hi\n[2026-10-14T09:04:00Z] Agent: Hello\n")
    assert [s.start for s in t.segments] == [0.0, 240.0] and t.started_at == T0


@pytest.mark.parametrize(("body", "words"), [
    ('[{"speaker": "agent", "text": "a", "time": "2026-13-40T09:00:00Z"}]', "turn 1: time"),
    ('[{"speaker": "agent", "text": "a", "time": "2026-10-14T25:00:00Z"}]',
     "not a date and time that exists"),
    ('[{"speaker": "agent", "text": "a", "time": "last tuesday"}]', "ISO 8601"),
    ('[{"speaker": "agent", "text": "a", "time": "2026-10-14T09:05:00Z"},'
     ' {"speaker": "customer", "text": "b", "time": "2026-10-14T09:01:00Z"}]',
     "turn 2: its time is before turn 1's"),
    ('[{"speaker": "agent", "text": "a", "start": 50}, {"speaker": "customer", "text": "b", "start": 10}]',
     "times do not go backwards"),
    ('[{"speaker": "agent", "text": "a", "time": "2026-10-14T09:05:00Z"},'
     ' {"speaker": "customer", "text": "b", "time": 400}]', "turn 2: its time is in seconds"),
    ('[{"speaker": "agent", "text": "a", "time": "2026-10-14T09:05:00Z"},'
     ' {"speaker": "customer", "text": "b", "time": "2026-10-14T09:06:00"}]', "time zone"),
    ('[{"speaker": "agent", "text": "a", "time": "2026-10-14T09:05:00Z", "start": 3}]', "not both"),
    ('{"channel": "fax", "turns": [{"speaker": "agent", "text": "a"}]}', "channel must be one of"),
])
def test_bad_times_are_clear_errors(body: str, words: str) -> None:
    with pytest.raises(TranscriptError, match=words):
        parse_transcript(body.encode(), filename="t.json")


def test_the_channel_is_settled_from_the_sender_the_input_or_the_kind_of_input() -> None:
    text = parse_transcript(b"Agent: Hello\nCustomer: Hi")
    assert settle_channel(text, None).channel == "chat"  # a transcript that does not say is a chat
    assert settle_channel(text, "im").channel == "im"
    email = parse_transcript(chat(("customer", 0, "a"), channel="email"))
    assert settle_channel(email, None).channel == "email"
    with pytest.raises(TranscriptError, match="says chat but the transcript says email"):
        settle_channel(email, "chat")


# -- waits ---------------------------------------------------------------------------------------------

def seg(speaker: str, start: float) -> Segment:
    return Segment(speaker=speaker, start=start, end=start + 1, text="x")  # type: ignore[arg-type]


def test_consecutive_customer_messages_wait_from_the_first_and_a_trailing_one_is_unanswered() -> None:
    found = waits([seg("agent", 0), seg("customer", 10), seg("customer", 200), seg("agent", 400),
                   seg("customer", 500), seg("agent", 530), seg("customer", 600)])
    assert [(w.asked, w.replied, w.seconds) for w in found.answered] == [(1, 3, 390.0), (4, 5, 30.0)]
    assert found.longest == found.answered[0] and found.first == found.answered[0]
    assert found.unanswered is not None and found.unanswered.asked == 6
    assert found.mean_seconds == 210.0


@pytest.mark.parametrize(("seconds", "words"), [(45, "45 s"), (420, "7 min"), (450, "7 min 30 s"),
                                                 (90000, "25 h"), (3 * 86400 + 7200, "3 d 2 h")])
def test_waits_read_as_people_say_them(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


# -- the rubric ------------------------------------------------------------------------------------

def rubric_with(criterion: dict[str, Any]) -> str:
    doc = yaml.safe_load(RUBRIC_CHAT.read_text())
    doc["criteria"].append(criterion)
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(("criterion", "words"), [
    ({"response_time": {"max_seconds": 300}, "phrases": ["hello"]}, "remove `phrases`"),
    ({"response_time": {"max_seconds": 0}}, "`max_seconds` is a number of seconds"),
    ({"response_time": {"max_seconds": {"fax": 60}}}, "fax"),
    ({"response_time": {"max_seconds": {}}}, "empty map"),
    ({"response_time": {"max_seconds": 300, "measure": "average"}}, "longest"),
    ({"response_time": {"max_seconds": 300}, "speaker": "customer"}, "its speaker is `agent`"),
    ({"response_time": {"max_seconds": 300, "max_minutes": 5}}, "max_minutes"),
    ({"phrases": ["hi"], "after": "reply_times"}, "not said at a moment"),
    ({}, "or a `response_time`"),
])
def test_bad_response_time_criteria_are_clear_errors(criterion: dict[str, Any], words: str) -> None:
    crit = {"id": "extra", "title": "Extra", "speaker": "agent", "points": 5, **criterion}
    with pytest.raises(RulesError, match=words):
        load_rubric(rubric_with(crit), name="rubric-chat.yaml")


# -- scoring through the pipeline -------------------------------------------------------------------

@pytest.fixture(scope="module")
def engines() -> Any:
    from qa_service.pipeline import load_engines
    from qa_service.settings import Settings

    return load_engines(Settings(), speech=False)


def scored(engines: Any, body: bytes, *, rubric: Path = RUBRIC_CHAT, channel: str | None = None,
           text: str | None = None) -> dict[str, Any]:
    from qa_service.pipeline import process_transcript

    transcript = parse_transcript(text, filename="chat.txt") if text is not None else \
        parse_transcript(body, filename="chat.json")
    card = process_transcript(transcript, CallMeta("chat-1", "agent-ana", DAY, channel=channel),
                              load_rubric(rubric), load_policy_pack(SAMPLES / "policies.yaml"), engines)
    return card.to_dict()


def criterion(card: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in card["criteria"] if c["id"] == cid)


def test_a_seven_minute_chat_reply_fails_a_five_minute_rule_and_four_minutes_pass(engines: Any) -> None:
    slow = scored(engines, with_reply_after(420))
    c = criterion(slow, "reply_times")
    assert (c["passed"], c["applicable"], c["points"]) == (False, True, 0.0)
    assert c["response"]["wait_s"] == 420.0 and c["response"]["limit_s"] == 300
    assert (c["response"]["asked_at"], c["response"]["replied_at"]) == \
        ("2026-10-14T09:00:30+00:00", "2026-10-14T09:07:30+00:00")
    assert "waited 7 min (420 s)" in c["reason"] and "limit for chats is 5 min (300 s)" in c["reason"]
    assert "2026-10-14T09:00:30+00:00" in c["reason"]
    # The evidence names the slow reply: the customer's message and the agent's answer, with times.
    assert [(e["speaker"], e["start"]) for e in c["evidence"]] == [("customer", 30.0), ("agent", 450.0)]
    assert slow["channel"] == "chat" and slow["started_at"] == "2026-10-14T09:00:00+00:00"
    # The first reply is the same slow one: both response-time criteria fail, 50 points of 100 lost.
    assert slow["score"] == 50.0 and slow["passed"] is False

    quick = scored(engines, with_reply_after(240))
    c = criterion(quick, "reply_times")
    assert (c["passed"], c["points"], c["reason"]) == (True, 30.0, "")
    assert c["response"]["wait_s"] == 240.0
    assert quick["score"] == 100.0 and quick["passed"] is True


def test_the_evidence_text_is_redacted(engines: Any) -> None:
    body = chat(("customer", 0, "Hi, I am Maria Lopez, my number is 0612345678"),
                ("agent", 400, "Thanks for contacting Harbourline Relocation, sorry for the wait."))
    c = criterion(scored(engines, body), "reply_times")
    assert not c["passed"]
    text = " ".join(e["text"] for e in c["evidence"])
    assert "Maria" not in text and "0612345678" not in text and "<" in text


def test_the_first_response_measure_times_only_the_first_reply(engines: Any) -> None:
    # An opening greeting is no reply; the first customer message waits 6 minutes, the next one 1.
    body = chat(("agent", 0, "Thanks for contacting Harbourline Relocation."),
                ("customer", 60, "Is the fee 420 euros?"),
                ("agent", 60 + 360, "Yes, the permit fee is 420 euros."),
                ("customer", 500, "Thanks."),
                ("agent", 560, "Is there anything else I can help you with?"))
    card = scored(engines, body)
    first, longest = criterion(card, "first_response"), criterion(card, "reply_times")
    assert (first["passed"], first["response"]["wait_s"]) == (False, 360.0)
    assert "first reply" in first["reason"]
    assert (longest["passed"], longest["response"]["wait_s"]) == (False, 360.0)
    # Answered at once, then slowly: the first response is in time, the longest wait is not.
    body = chat(("customer", 0, "Is the fee 420 euros?"), ("agent", 50, "Yes."),
                ("customer", 100, "And the form?"), ("agent", 100 + 600, "Use the online permit service."))
    card = scored(engines, body)
    assert criterion(card, "first_response")["passed"] is True
    assert criterion(card, "first_response")["response"]["wait_s"] == 50.0
    assert criterion(card, "reply_times")["passed"] is False


def test_an_email_thread_has_a_day_to_be_answered(engines: Any) -> None:
    def thread(hours: float) -> bytes:
        return chat(("customer", 0, "Dear Harbourline, can I still fax the form?"),
                    ("agent", hours * 3600, "Thank you for contacting Harbourline. Please use the online "
                                            "permit service."), channel="email")

    late = criterion(scored(engines, thread(25)), "reply_times")
    assert (late["passed"], late["response"]["channel"], late["response"]["limit_s"]) == \
        (False, "email", 86400)
    assert "25 h" in late["reason"] and "e-mails is 24 h" in late["reason"]
    assert criterion(scored(engines, thread(23)), "reply_times")["passed"] is True
    # The same 23 hours in a chat are far too slow; the form field names the channel here.
    as_chat = criterion(scored(engines, thread(23).replace(b'"email"', b'"chat"')), "reply_times")
    assert as_chat["passed"] is False


def test_seconds_from_the_start_time_replies_too(engines: Any) -> None:
    c = criterion(scored(engines, with_reply_after(420, absolute=False)), "reply_times")
    assert (c["passed"], c["response"]["wait_s"], c["response"]["asked_at"]) == (False, 420.0, None)
    assert "wrote at 30 s, answered at 450 s" in c["reason"]


def test_without_times_or_a_limit_for_the_channel_the_criterion_does_not_apply(engines: Any) -> None:
    untimed = scored(engines, b"", text="Agent: Thanks for contacting Harbourline.\nCustomer: Hi\n"
                                        "Agent: Is there anything else I can help you with?")
    c = criterion(untimed, "reply_times")
    assert (c["applicable"], c["max_points"]) == (False, 0.0) and "gives no times" in c["reason"]
    call = criterion(scored(engines, with_reply_after(420, channel="call")), "reply_times")
    assert call["applicable"] is False and "no limit for calls" in call["reason"]


def test_a_rescore_times_a_conversation_as_scoring_did(engines: Any) -> None:
    from qa_service.rescore import rescore_card

    rubric = load_rubric(RUBRIC_CHAT)
    policies = load_policy_pack(SAMPLES / "policies.yaml")
    email = chat(("customer", 0, "Dear Harbourline, can I still fax the form?"),
                 ("agent", 25 * 3600, "Thank you for contacting Harbourline."), channel="email")
    untimed = scored(engines, b"", text="Agent: Thanks for contacting Harbourline.\nCustomer: Hi\n"
                                        "Agent: Is there anything else I can help you with?")
    for card in (scored(engines, email), untimed, scored(engines, with_reply_after(420))):
        again = rescore_card(card, rubric, policies, engines.nlp)
        assert criterion(again, "reply_times") == criterion(card, "reply_times")
        assert (again["score"], again["passed"]) == (card["score"], card["passed"])


def test_an_unanswered_last_message_is_left_out_unless_the_rule_fails_it(engines: Any,
                                                                          tmp_path: Path) -> None:
    body = chat(("customer", 0, "Hello?"), ("agent", 60, "Thanks for contacting Harbourline."),
                ("customer", 100, "Can I fax the form?"))
    c = criterion(scored(engines, body), "reply_times")
    assert (c["passed"], c["response"]["wait_s"], c["response"]["unanswered"]) == (True, 60.0, True)
    doc = yaml.safe_load(RUBRIC_CHAT.read_text())
    for crit in doc["criteria"]:
        if crit["id"] == "reply_times":
            crit["response_time"]["unanswered"] = "fail"
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(doc))
    c = criterion(scored(engines, body, rubric=strict), "reply_times")
    assert c["passed"] is False and "had no reply before the conversation ended" in c["reason"]
    assert [e["start"] for e in c["evidence"]] == [100.0]


def test_the_sample_calls_keep_their_scores(engines: Any) -> None:
    """The sample rubric has no response-time criterion: the sample chat scores as before."""
    card = scored(engines, (SAMPLES / "transcript-chat.json").read_bytes(), rubric=SAMPLES / "rubric.yaml")
    assert all("response" not in c for c in card["criteria"])
    assert card["channel"] == "chat" and "started_at" not in card
    sample = scored(engines, (SAMPLES / "chat-timed.json").read_bytes())
    assert criterion(sample, "reply_times")["response"]["wait_s"] == 420.0  # "Hello?" does not restart it


# -- through the API, with a worker ----------------------------------------------------------------

@pytest.fixture
def api(make_settings, redis_url, redis_conn, engines):
    import hashlib

    from qa_service.worker.context import WorkerContext, activate
    from tests.test_api import Api, seed_rules

    a = Api(make_settings(redis_url=redis_url), redis_conn)
    seed_rules(a.repo)
    text = RUBRIC_CHAT.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    a.repo.put_rules("rubric", "harbourline-written", "2026.10", digest, text)
    activate(WorkerContext(settings=a.settings, store=a.repo, engines_loaded=engines))
    yield a
    activate(None)


FORM = {"call_date": DAY.isoformat(), "rubric_id": "harbourline-written",
        "policy_pack_id": "valdoria-residence"}


def submit(api, body: bytes, **fields: str):
    return api.client.post("/v1/calls", headers=api.h(), data={"agent_id": "agent-ana", **FORM, **fields},
                           files={"transcript": ("chat.json", body, "application/json")})


def run(api, redis_conn, body: bytes, **fields: str) -> str:
    from rq import SimpleWorker

    r = submit(api, body, **fields)
    assert r.status_code == 202, r.text
    SimpleWorker([api.queue], connection=redis_conn).work(burst=True)
    call_id = r.json()["id"]
    assert api.repo.get_call(call_id).status == "done", api.repo.get_call(call_id).failure_reason
    return call_id


def test_through_the_api_a_slow_chat_reply_fails_and_attainment_is_in_the_aggregates(api, redis_conn) -> None:
    slow = run(api, redis_conn, with_reply_after(420))
    quick = run(api, redis_conn, with_reply_after(240))
    email = run(api, redis_conn, with_reply_after(3 * 3600, channel=None), channel="email")

    card = api.client.get(f"/v1/calls/{slow}/scorecard", headers=api.h()).json()
    c = criterion(card, "reply_times")
    assert (c["passed"], c["response"]["wait_s"], card["channel"]) == (False, 420.0, "chat")
    assert card["passed"] is False
    assert criterion(api.client.get(f"/v1/calls/{quick}/scorecard", headers=api.h()).json(),
                     "reply_times")["passed"] is True
    mail = api.client.get(f"/v1/calls/{email}/scorecard", headers=api.h()).json()
    assert mail["channel"] == "email" and criterion(mail, "reply_times")["passed"] is True
    assert api.client.get(f"/v1/calls/{email}", headers=api.h()).json()["channel"] == "email"

    agg = api.client.get("/v1/agents/agent-ana/scorecards", headers=api.h()).json()["aggregate"]
    rates = {(r["criterion_id"], r["channel"]): r for r in agg["response_times"]}
    chat_rate = rates[("reply_times", "chat")]
    assert (chat_rate["conversations"], chat_rate["within"], chat_rate["attainment"]) == (2, 1, 0.5)
    assert (chat_rate["mean_wait_s"], chat_rate["longest_wait_s"], chat_rate["measure"]) == \
        (330.0, 420.0, "longest")
    mail_rate = rates[("reply_times", "email")]
    assert (mail_rate["attainment"], mail_rate["longest_wait_s"]) == (1.0, 10800.0)
    assert rates[("first_response", "chat")]["attainment"] == 0.5

    # A reviewer finds the customer had said "no rush": the override counts in the attainment.
    r = api.client.post(f"/v1/calls/{slow}/reviews", headers=api.h(), json={
        "target": "criterion", "id": "reply_times", "action": "override_pass",
        "reason": "customer said no rush"})
    assert r.status_code == 201, r.text
    summary = api.client.get("/v1/agents/agent-ana/summary", headers=api.h("supervisor")).json()
    rates = {(r["criterion_id"], r["channel"]): r for r in summary["aggregate"]["response_times"]}
    chat_rate = rates[("reply_times", "chat")]
    assert (chat_rate["within"], chat_rate["attainment"]) == (2, 1.0)
    agg = api.client.get("/v1/agents/agent-ana/scorecards", headers=api.h()).json()["aggregate"]
    assert {(r["criterion_id"], r["channel"]): r["attainment"] for r in agg["response_times"]}[
        ("reply_times", "chat")] == 1.0

    # Another agent's conversations are not counted.
    other = api.client.get("/v1/agents/agent-mira/scorecards", headers=api.h()).json()["aggregate"]
    assert "response_times" not in other, "an aggregate without response-time rules keeps its shape"


def test_the_agent_page_shows_response_times(api, redis_conn) -> None:
    from tests.test_web import sign_in

    run(api, redis_conn, with_reply_after(420))
    assert sign_in(api.client, api.keys["supervisor"]).status_code == 303
    page = api.client.get("/agents/agent-ana")
    assert page.status_code == 200
    assert "Response times" in page.text and "7 min" in page.text and "0/1" in page.text


@pytest.mark.parametrize(("body", "fields", "words"), [
    (b'[{"speaker": "customer", "time": "2026-10-14T09:00:00Z", "text": "a"},'
     b' {"speaker": "agent", "time": "2026-10-14T08:00:00Z", "text": "b"}]', {}, "times do not go backwards"),
    (b'[{"speaker": "customer", "time": "2026-10-14 9 o\'clock", "text": "a"}]', {}, "ISO 8601"),
    (b'{"channel": "email", "turns": [{"speaker": "customer", "text": "a"}]}', {"channel": "chat"},
     "the transcript says email"),
    (b'[{"speaker": "customer", "text": "a"}]', {"channel": "pigeon"}, "channel"),
])
def test_bad_timestamps_are_a_clear_422_at_submission_and_lose_nothing(api, body, fields, words) -> None:
    r = submit(api, body, call_id="chat-77", **fields)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]
    assert api.queue.count == 0
    assert not any(api.settings.storage_dir.iterdir()), "a refused upload leaves nothing behind"
    assert api.repo.find_call("chat-77") is None
    # The same call id is free for the corrected conversation.
    fixed = submit(api, with_reply_after(60), call_id="chat-77")
    assert fixed.status_code == 202, fixed.text


def test_a_recording_is_a_call(api) -> None:
    r = api.client.post("/v1/calls", headers=api.h(),
                        data={"agent_id": "agent-ana", **FORM, "channel": "chat"},
                        files={"audio": ("a.wav", b"RIFF....WAVE", "audio/wav")})
    assert r.status_code == 422 and "a recording is a call" in r.json()["detail"]
    assert not any(api.settings.storage_dir.iterdir())


# -- the aggregate in SQL (SQLite and PostgreSQL) and in the memory twin -----------------------------

def stored_card(passed: bool, wait: float | None, channel: str = "chat",
                applicable: bool = True) -> dict[str, Any]:
    response = {"measure": "longest", "channel": channel, "limit_s": 300.0, "wait_s": wait, "answered": 1,
                "mean_wait_s": wait, "unanswered": False, "asked_at": None, "replied_at": None}
    return {"score": 100.0 if passed else 70.0, "passed": passed, "auto_fail": False,
            "rubric": {"id": "harbourline-written", "version": "2026.10"}, "channel": channel,
            "criteria": [{"id": "greeting", "title": "Greets", "passed": True, "applicable": True},
                         {"id": "reply_times", "title": "Replies in time", "passed": passed or not applicable,
                          "applicable": applicable, "response": response}]}


def fill(repo: Any) -> dict[str, str]:
    import uuid

    from qa_service.storage.repository import NewCall

    cards = {"slow": stored_card(False, 420.0), "quick": stored_card(True, 240.0),
             "mail": stored_card(True, 7200.0, channel="email"),
             "nolimit": stored_card(True, None, "call", False),
             "rescored": stored_card(True, 60.0)}
    ids = {}
    for name, card in cards.items():
        call_id = str(uuid.uuid4())
        repo.add_call(NewCall(id=call_id, agent_id="agent-ana", call_date=DAY,
                              rubric_id="harbourline-written", rubric_version="2026.10", policy_pack_id="p",
                              policy_pack_version="1", input_kind="transcript"))
        if name == "rescored":  # an earlier version that was slow: only the latest counts
            repo.finish_call(call_id, stored_card(False, 900.0))
        repo.finish_call(call_id, card)
        ids[name] = call_id
    other = str(uuid.uuid4())
    repo.add_call(NewCall(id=other, agent_id="agent-bo", call_date=DAY, rubric_id="harbourline-written",
                          rubric_version="2026.10", policy_pack_id="p", policy_pack_version="1"))
    repo.finish_call(other, stored_card(False, 1000.0))
    return ids


def review(call_id: str, action: str, n: int) -> Any:
    from qa_service.review import Review

    return Review(call_id=call_id, scorecard_version=1, target_kind="criterion", target_id="reply_times",
                  action=action, reason="checked", reviewer_key_id=str(uuid_of(n)), reviewer_name="qa",
                  created_at=datetime(2026, 10, 20, 10, n, tzinfo=UTC))


def uuid_of(n: int) -> Any:
    import uuid

    return uuid.UUID(int=n)


def rates_of(repo: Any) -> dict[str, tuple[int, int, float | None, float | None, float | None]]:
    _, summary = repo.agent_scorecards("agent-ana")
    return {r.channel: (r.conversations, r.within, r.attainment, r.mean_wait_s, r.longest_wait_s)
            for r in summary.response_times}


@pytest.mark.parametrize("where", ["sql", "memory"])
def test_attainment_per_agent_counts_the_latest_versions_and_reviewed_verdicts(where, database_url) -> None:
    from qa_service.storage import open_repository
    from qa_service.storage.memory import MemoryRepository

    repo = open_repository(database_url) if where == "sql" else MemoryRepository()
    ids = fill(repo)
    # Chats: slow (420, out), quick (240), rescored (60 now): 2 of 3 within; "call" had no limit.
    assert rates_of(repo) == {"chat": (3, 2, 0.6667, 240.0, 420.0), "email": (1, 1, 1.0, 7200.0, 7200.0)}
    # A reviewer passes the slow one, then fails the quick one and restores it: the last word counts.
    repo.reviews.add(review(ids["slow"], "override_pass", 1))
    repo.reviews.add(review(ids["quick"], "override_fail", 2))
    repo.reviews.add(review(ids["quick"], "restore", 3))
    assert rates_of(repo)["chat"][:3] == (3, 3, 1.0)
    # Overriding a criterion that did not apply makes it count, as in the reviewed score.
    repo.reviews.add(review(ids["nolimit"], "override_fail", 4))
    assert rates_of(repo)["call"][:3] == (1, 0, 0.0)
    if where == "sql":
        report = repo.views.agent_report("agent-ana", Filters())
        assert {r.channel: r.attainment for r in report.responses} == {"call": 0.0, "chat": 1.0, "email": 1.0}
        repo.dispose()

