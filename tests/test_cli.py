"""The qa-service command line: inline processing of recordings and transcripts, manifests, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qa_service.cli import main
from qa_service.report import format_scorecard, format_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
RULES = ["--rubric", str(SAMPLES / "rubric.yaml"), "--policies", str(SAMPLES / "policies.yaml")]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'qa.db'}")
    monkeypatch.setenv("QA_STORAGE_DIR", str(tmp_path / "storage"))
    return tmp_path


def test_transcript_is_scored_stored_and_written(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = env / "out"
    code = main(["process", "--transcript", str(SAMPLES / "transcript-chat.json"), *RULES,
                 "--agent-id", "agent-leo", "--call-date", "2026-10-22", "--call-id", "chat-1",
                 "--out", str(out)])
    assert code == 0
    card = json.loads((out / "chat-1.scorecard.json").read_text())
    assert card["call_id"] == "chat-1" and card["agent_id"] == "agent-leo"
    assert card["rubric"]["id"] == "harbourline-intake" and len(card["rubric"]["sha256"]) == 64
    by_id = {c["id"]: c for c in card["criteria"]}
    assert by_id["greeting"]["passed"] and by_id["greeting"]["evidence"][0]["speaker"] == "agent"
    assert not by_id["identity_check"]["passed"]
    # "We no longer accept faxed forms" is correct advice, not an outdated term.
    assert not [v for v in card["violations"] if v["kind"] == "outdated_policy"]
    printed = capsys.readouterr().out
    assert "chat-1" in printed and "identity_check" in printed

    from qa_service.settings import Settings
    from qa_service.storage import open_repository

    repo = open_repository(Settings().database_url)
    call = repo.find_call("chat-1")
    assert call is not None and call.status == "done" and call.source == "cli"
    stored = repo.get_scorecard(call.id)
    assert stored.passed == card["passed"]


def test_outdated_fee_in_text_transcript(env: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "call.txt"
    transcript.write_text(
        "Agent: Thanks for calling Harbourline, my name is Sam, this call is recorded.\n"
        "Customer: How much is the permit?\n"
        "Agent: The permit fee is three hundred and eighty euros.\n"
    )
    out = env / "out"
    assert main(["process", "--transcript", str(transcript), *RULES, "--call-date", "2026-10-01",
                 "--out", str(out), "--no-store"]) == 0
    card = json.loads((out / "call.scorecard.json").read_text())
    outdated = [v for v in card["violations"] if v["kind"] == "outdated_policy"]
    assert [v["policy_id"] for v in outdated] == ["permit-fee"]
    assert "420" in outdated[0]["detail"]
    # The same words on a date when 380 was still the fee are fine.
    assert main(["process", "--transcript", str(transcript), *RULES, "--call-date", "2026-07-15",
                 "--out", str(out), "--no-store"]) == 0
    card = json.loads((out / "call.scorecard.json").read_text())
    assert not [v for v in card["violations"] if v["kind"] == "outdated_policy"]


def test_bad_manifest_line_is_a_clear_error(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = env / "m.jsonl"
    manifest.write_text(json.dumps({"call_id": "a", "agent_id": "x", "call_date": "2026-13-45",
                                    "transcript": "t.txt"}) + "\n")
    assert main(["process", "--manifest", str(manifest), *RULES, "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "m.jsonl:1" in err


def test_broken_rubric_names_file_and_field(env: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rubric = tmp_path / "broken.yaml"
    rubric.write_text((SAMPLES / "rubric.yaml").read_text().replace("points: 10", "points: ten", 1))
    code = main(["process", "--transcript", str(SAMPLES / "transcript-chat.json"), "--rubric", str(rubric),
                 "--policies", str(SAMPLES / "policies.yaml"), "--no-store"])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "points" in err


@pytest.mark.slow
def test_batch_of_recordings_and_a_bad_file(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = env / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(200)))
    shutil.copy(SAMPLES / "audio" / "sample-002.flac", env / "sample-002.flac")
    manifest = env / "calls.jsonl"
    manifest.write_text(
        json.dumps({"audio": "sample-002.flac", "call_id": "s2", "agent_id": "agent-tom",
                    "call_date": "2026-10-20", "channels": "stereo"}) + "\n"
        + json.dumps({"audio": "broken.wav", "call_id": "bad", "agent_id": "agent-tom",
                      "call_date": "2026-10-20"}) + "\n"
        + json.dumps({"audio": str(ROOT / "tests/data/audio/chinese_16k.flac"), "call_id": "zh",
                      "agent_id": "agent-tom", "call_date": "2026-10-20"}) + "\n"
    )
    out = env / "out"
    code = main(["process", "--manifest", str(manifest), *RULES, "--out", str(out)])
    assert code == 1  # one call failed; the other was still scored
    captured = capsys.readouterr()
    assert "bad: failed" in captured.err
    card = json.loads((out / "s2.scorecard.json").read_text())
    assert card["auto_fail"] and not card["passed"]
    assert "promises_result" in {v["id"] for v in card["violations"]}
    speakers = {s["speaker"] for s in card["transcript"]}
    assert speakers == {"agent", "customer"}
    assert card["metrics"]["talk_time_s"]["agent"] > card["metrics"]["talk_time_s"]["customer"] > 0
    assert card["language"] == "en" and card["models"]["asr"]["name"] == "tiny.en"
    assert "language_detection" not in card["models"]["asr"]  # the English model was sure of it
    assert not (out / "bad.scorecard.json").exists()
    assert "s2" in captured.out  # the summary table
    # A call in Mandarin: heard by the multilingual model, written in Chinese, flagged for review.
    zh = json.loads((out / "zh.scorecard.json").read_text())
    assert zh["language"] == "zh" and zh["models"]["asr"]["name"] == "base"
    assert zh["models"]["asr"]["language_detection"]["language"] == "zh"
    assert any("\u4e00" <= ch <= "\u9fff" for s in zh["transcript"] for ch in s["text"])
    assert any("'zh'" in w and "rubric" in w for w in zh["warnings"])
    assert any("'zh'" in w and "names" in w for w in zh["warnings"])


def test_summary_formats() -> None:
    card = {
        "call_id": "c1", "agent_id": "a1", "call_date": "2026-01-02", "score": 42.5, "passed": False,
        "auto_fail": True, "warnings": [], "criteria": [
            {"id": "greeting", "title": "Greets", "passed": False, "max_points": 10, "applicable": True}],
        "violations": [{"id": "promises_result", "kind": "prohibited", "policy_id": None, "start": 75.2,
                        "speaker": "agent", "text": "I can guarantee your permit", "detail": "a promise"}],
        "to_check": [{"id": "permit-fee", "kind": "outdated_policy", "policy_id": "permit-fee", "start": 80.0,
                      "speaker": "agent", "text": "the fee is two hundred", "detail": "not counted"}],
    }
    text = format_scorecard(card)
    assert "score 42.5  FAIL  (auto-fail)" in text
    assert "greeting" in text and '01:15.2 (agent): "I can guarantee your permit"' in text
    assert text.index("to check (not counted):") < text.index("permit-fee at 01:20.0")
    table = format_table([card])
    assert "c1" in table and "AUTO" in table and "promises_result" in table and "permit-fee" not in table


def test_keys_create_prints_the_key_alone_and_audits_it(env: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--role", "supervisor", "--name", "night shift"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    key = out[-1]
    assert len(out) == 1 and len(key) > 20 and " " not in key

    from qa_service.auth import verify_key
    from qa_service.settings import Settings
    from qa_service.storage import open_repository

    repo = open_repository(Settings().database_url)
    assert verify_key(repo, key).role == "supervisor"
    entries = repo.audit.entries()
    assert [(e.action, e.details) for e in entries] == [("create_key", "role=supervisor name=night shift")]
    assert key not in str(entries)


def test_keys_list_and_revoke(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import getpass
    import uuid

    from qa_service.auth import hash_key, verify_key
    from qa_service.errors import AuthError
    from qa_service.settings import Settings
    from qa_service.storage import open_repository

    assert main(["keys", "list"]) == 0
    assert "no API keys" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "telephony", "--name", "pbx"]) == 0
    pbx = capsys.readouterr().out.strip()
    assert main(["keys", "create", "--role", "admin", "--name", "ops"]) == 0
    capsys.readouterr()
    repo = open_repository(Settings().database_url)
    old = repo.add_key("made before prefixes", "qa", hash_key("qak_" + "o" * 43))
    stored = {k.name: k for k in repo.list_keys()}

    assert main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "role", "prefix", "created", "(UTC)", "state"]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert set(by_id) == {k.id for k in stored.values()}
    assert by_id[stored["pbx"].id].split()[1:4] == ["pbx", "telephony", pbx[:12] + "..."]
    assert by_id[stored["pbx"].id].endswith("active") and by_id[old.id].split()[5] == "-"
    # The listing shows no key and no hash.
    assert pbx not in "\n".join(lines) and stored["pbx"].key_hash not in "\n".join(lines)

    assert main(["keys", "revoke", stored["pbx"].id]) == 0
    assert capsys.readouterr().out.strip() == f"telephony key 'pbx' ({stored['pbx'].id}) revoked"
    with pytest.raises(AuthError, match="revoked"):
        verify_key(repo, pbx, max_age_s=0)
    # Again: nothing changes, and it says so; written without hyphens it is the same key.
    assert main(["keys", "revoke", uuid.UUID(stored["pbx"].id).hex]) == 0
    assert "was already revoked" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    assert next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith(stored["pbx"].id)).endswith("revoked")
    # An unknown id is an error that says what to do, and changes nothing.
    assert main(["keys", "revoke", str(uuid.uuid4())]) == 2
    err = capsys.readouterr().err
    assert "no API key with id" in err and "keys list" in err
    assert [k.revoked for k in repo.list_keys()] == [True, False, False]

    entries = repo.audit.entries(action="revoke_key")
    assert [(e.key_name, e.target_kind, e.target_id, e.details) for e in entries] == [
        (f"cli:{getpass.getuser()}", "key", stored["pbx"].id, "role=telephony name=pbx already revoked"),
        (f"cli:{getpass.getuser()}", "key", stored["pbx"].id, "role=telephony name=pbx")]
    created = repo.audit.entries(action="create_key")
    assert {e.target_id for e in created} == {stored["pbx"].id, stored["ops"].id}
    repo.dispose()


def test_keys_create_with_a_blank_name_is_an_error(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--role", "qa", "--name", "   "]) == 2
    assert "a key needs a name" in capsys.readouterr().err


def test_retry_queues_failed_calls_again(env: Path, redis_url: str, redis_conn: object,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import uuid
    from datetime import date

    import redis
    from rq import Queue

    from qa_service.settings import Settings
    from qa_service.storage import NewCall, open_repository
    from qa_service.storage.inputs import write_bytes

    monkeypatch.setenv("QA_REDIS_URL", redis_url)
    settings = Settings()
    repo = open_repository(settings.database_url)
    kept, gone = str(uuid.uuid4()), str(uuid.uuid4())
    for call_id, external in ((kept, "ext-kept"), (gone, "ext-gone")):
        path = None if call_id == gone else write_bytes(settings.storage_dir, call_id, b"Agent: hi", ".txt")
        repo.add_call(NewCall(id=call_id, external_id=external, agent_id="a", call_date=date(2026, 10, 1),
                              rubric_id="r", rubric_version="1", policy_pack_id="p", policy_pack_version="1",
                              input_kind="transcript", input_path=str(path) if path else None))
        repo.fail_call(call_id, "the database was away")
    assert main(["retry", "ext-kept", "ext-gone", "no-such-call"]) == 1
    out, err = capsys.readouterr()
    assert f"ext-kept: queued again as {kept}" in out
    assert "ext-gone: the call's input is no longer stored" in err and "no-such-call:" in err
    assert repo.get_call(kept).status == "queued" and repo.get_call(gone).status == "failed"
    queue = Queue(settings.queue_name, connection=redis.Redis.from_url(redis_url))
    assert queue.job_ids == [kept]  # the Redis is emptied before each test (redis_conn)
