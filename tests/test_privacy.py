"""Privacy after processing: only redacted audio stays, its digits silenced; no personal data anywhere."""

from __future__ import annotations

import array
import re
import shutil
import subprocess
import uuid
import wave
from datetime import date
from pathlib import Path

import pytest

from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.storage import NewCall, open_repository
from qa_service.storage.inputs import call_dir, write_bytes
from qa_service.worker import jobs
from qa_service.worker.context import WorkerContext, activate, current

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
PHONE = "four one five, five five five, zero one three two"
DIGITS = "4155550132"

pytestmark = pytest.mark.slow


def _speak(text: str, voice: str, tmp: Path) -> array.array:
    raw, out = tmp / "raw.wav", tmp / "out.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return array.array("h", w.readframes(w.getnframes()))


def _stereo_call(tmp: Path) -> bytes:
    """Agent on the left asks for a phone number; the customer on the right says it."""
    left, right = array.array("h"), array.array("h")
    for side, text, voice in (("agent", "Thank you. Could you confirm your phone number please?", "en-us"),
                              ("customer", f"Sure, my number is {PHONE}.", "en-gb")):
        said = _speak(text, voice, tmp)
        gap = [0] * 8000
        (left if side == "agent" else right).extend(said)
        (right if side == "agent" else left).extend([0] * len(said))
        left.extend(gap)
        right.extend(gap)
    inter = array.array("h", [0] * (2 * len(left)))
    inter[0::2], inter[1::2] = left, right
    path = tmp / "call.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(inter.tobytes())
    return path.read_bytes()


def _digit_runs(text: str) -> str:
    words = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
             "six": "6", "seven": "7", "eight": "8", "nine": "9"}
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return "".join(words.get(w, w) for w in tokens if w in words or w.isdigit())


def test_processed_call_keeps_only_redacted_audio(make_settings, tmp_path: Path) -> None:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox render the test call (scripts/system-deps.sh installs them)")
    settings = make_settings()
    repo = open_repository(settings.database_url)
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    repo.put_rules("rubric", rubric.id, rubric.version, rubric.sha256, rubric.text)
    repo.put_rules("policy_pack", policies.id, policies.version, policies.sha256, policies.text)
    call_id = str(uuid.uuid4())
    raw = write_bytes(settings.storage_dir, call_id, _stereo_call(tmp_path), ".wav")
    repo.add_call(NewCall(id=call_id, agent_id="agent-mira", call_date=date(2026, 10, 1), rubric_id=rubric.id,
                          rubric_version=rubric.version, policy_pack_id=policies.id,
                          policy_pack_version=policies.version, channels="stereo", input_path=str(raw)))
    activate(WorkerContext(settings=settings, store=repo))
    try:
        assert jobs.process_call(call_id) == call_id
        card = repo.get_scorecard(call_id).data
        assert repo.get_call(call_id).status == "done"
        assert not raw.exists()  # the raw recording is gone
        assert [p.name for p in call_dir(settings.storage_dir, call_id).iterdir()] == ["redacted.wav"]
        assert any(r["speaker"] == "customer" for r in card["redactions"])
        said = " ".join(s["text"] for s in card["transcript"])
        assert DIGITS[-4:] not in _digit_runs(said)

        # Listening again to what is kept reveals none of the number.
        from qa_service.stages.decode import decode

        kept = decode(call_dir(settings.storage_dir, call_id) / "redacted.wav")
        transcriber = current().engines().transcriber
        heard = " ".join(s.text for ch in kept.channels for s in transcriber.transcribe(ch).segments)
        runs = _digit_runs(heard)
        assert not any(DIGITS[i:i + 4] in runs for i in range(len(DIGITS) - 3)), heard
        assert "phone number" in heard.lower()  # the rest of the call is still there
    finally:
        activate(None)


@pytest.mark.parametrize("with_redacted", [True, False])
def test_removing_the_input_keeps_only_the_redacted_copy(tmp_path: Path, with_redacted: bool) -> None:
    import numpy as np

    from qa_service.records import Audio
    from qa_service.storage.inputs import remove_input, write_redacted_audio

    call_id = str(uuid.uuid4())
    raw = write_bytes(tmp_path, call_id, b"RIFF raw recording bytes", ".wav")
    if with_redacted:
        audio = Audio(channels=(np.zeros(1600, dtype=np.float32),), duration_s=0.1, source_format="wav",
                      source_rate=16000, source_channels=1)
        write_redacted_audio(tmp_path, call_id, audio)
    remove_input(tmp_path, call_id)
    assert not raw.exists()
    folder = call_dir(tmp_path, call_id)
    if with_redacted:
        assert [p.name for p in folder.iterdir()] == ["redacted.wav"]
    else:
        assert not folder.exists()


SECRETS_CALL = """Agent: Thanks for calling Harbourline, my name is Mira, and this call is recorded.
Customer: Hi, this is Adaeze Okonkwo-Baptiste, I want to pay my permit fee.
Agent: Can I take your card number please?
Customer: Yes, it is 4111 1111 1111 1111, and my email is adaeze dot okonkwo at example dot com.
Agent: Thank you. And your date of birth?
Customer: The third of May, nineteen eighty nine.
Agent: Thanks Adaeze. Is there anything else I can help you with?
"""
SECRETS = [b"Okonkwo", b"okonkwo", b"Adaeze", b"4111111111111111", b"4111 1111 1111 1111", b"1111 1111"]


@pytest.mark.parametrize("keep_raw", [False, True])
def test_nothing_personal_is_left_anywhere(make_settings, caplog: pytest.LogCaptureFixture,
                                           keep_raw: bool) -> None:
    """Byte scan of the database, the storage folder, the scorecard and the logs after processing.

    With keep_raw_transcript on, the raw input stays, encrypted: the scan still finds nothing, and a
    plain copy planted beside it is found (proof that the scan would see a leak).
    """
    key = "m3LQ0lOQ4B0Yl7I1tq3yJ0o9cXb2oF8kZb8oQm3x2zU="
    settings = make_settings(keep_raw_transcript=keep_raw, encryption_key=key if keep_raw else None)
    repo = open_repository(settings.database_url)
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    repo.put_rules("rubric", rubric.id, rubric.version, rubric.sha256, rubric.text)
    repo.put_rules("policy_pack", policies.id, policies.version, policies.sha256, policies.text)
    call_id = str(uuid.uuid4())
    raw = write_bytes(settings.storage_dir, call_id, SECRETS_CALL.encode(), ".txt")
    repo.add_call(NewCall(id=call_id, external_id="privacy-1", agent_id="agent-mira",
                          call_date=date(2026, 10, 1), rubric_id=rubric.id, rubric_version=rubric.version,
                          policy_pack_id=policies.id, policy_pack_version=policies.version,
                          input_kind="transcript", input_path=str(raw)))
    activate(WorkerContext(settings=settings, store=repo))
    caplog.set_level("DEBUG")
    try:
        jobs.process_call(call_id)
    finally:
        activate(None)
    card = repo.get_scorecard(call_id).data
    assert card["redactions"], "the call has personal data to redact"
    assert "<CREDIT_CARD>" in str(card) or "<ID>" in str(card)
    repo.engine.dispose()  # flush SQLite's write-ahead log into the file before reading its bytes

    def leaks() -> list[tuple[str, str]]:
        places: dict[str, bytes] = {"scorecard": str(card).encode(), "logs": caplog.text.encode()}
        for path in [*settings.storage_dir.rglob("*"),
                     *Path(settings.database_url.removeprefix("sqlite:///")).parent.rglob("*")]:
            if path.is_file():
                places[str(path)] = path.read_bytes()
        return [(where, s.decode()) for where, data in places.items() for s in SECRETS if s in data]

    assert not leaks(), leaks()
    assert not raw.exists()
    kept = list(call_dir(settings.storage_dir, call_id).glob("*.sealed"))
    assert len(kept) == (1 if keep_raw else 0)
    if keep_raw:
        planted = kept[0].with_name("planted.txt")
        planted.write_bytes(SECRETS_CALL.encode())
        assert {where for where, _ in leaks()} == {str(planted)}
