"""Recordings without speech through the real pipeline (tiny.en): refused with the reason, never scored.

Silence, noise, tones, music and random data a decoder reads as samples end in NoSpeech, which fails
the call like any unusable input; random bytes that no decoder reads end in AudioError. Short real
speech, speech on a noisy line and a call with one party silent are still scored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from qa_service.cli import main
from qa_service.errors import AudioError, NoSpeech
from qa_service.pipeline import Engines, load_engines, process_audio
from qa_service.records import CallMeta
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.settings import Settings
from tests.test_bad_inputs import hissing, music, noise, rand, silence, speech, stereo, tone, wav, wav_raw

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
AUDIO = Path(__file__).parent / "data" / "audio"
RULES = ["--rubric", str(SAMPLES / "rubric.yaml"), "--policies", str(SAMPLES / "policies.yaml")]


def padded(x: np.ndarray, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    """The samples with a second of silence before and after, as a recording has."""
    pad = np.zeros(int(seconds * rate), np.float32)
    return np.concatenate([pad, x, pad])


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Engines:
    """The engines a worker loads by default (tiny.en, the multilingual model, the voice model)."""
    return load_engines(Settings(model_cache_dir=tmp_path_factory.mktemp("models"), asr_beam_size=1))


@pytest.fixture(scope="module")
def rules() -> tuple[object, object]:
    return load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")


def run(tmp_path: Path, name: str, data: bytes, engines: Engines, rules: tuple[object, object],
        channels: str = "mono") -> dict:
    """Write the file and run it through every stage; the scorecard as stored."""
    path = tmp_path / name
    path.write_bytes(data)
    meta = CallMeta("c1", "agent-mira", date(2026, 10, 14), channels)  # type: ignore[arg-type]
    return process_audio(path, meta, *rules, engines).to_dict()


REFUSED = (r"no speech found in the recording: ([\d.]+) s of audio, ([\d.]+) s of it voice-like, "
           r"and the recogniser was sure of [01] words? \(2 needed\); nothing to score \(.+\)")
WITHOUT_SPEECH: list[tuple[str, Callable[[], bytes], float]] = [
    ("silence-8k", lambda: wav(silence(5.0), rate=8000), 5.0),
    ("white-noise", lambda: wav(noise(5.0)), 5.0),
    ("loud-white-noise", lambda: wav(noise(5.0, level=0.5, seed=1)), 5.0),
    ("pink-noise", lambda: wav(noise(5.0, colour=1.0, seed=2)), 5.0),
    ("brown-noise", lambda: wav(noise(5.0, colour=2.0, seed=3)), 5.0),
    ("tone", lambda: wav(tone(5.0)), 5.0),
    ("music", lambda: wav(music(6.0)), 6.0),
    # A WAV header before random bytes: every byte pair is a sample, so it decodes as loud noise.
    ("random-pcm-body", lambda: wav_raw(1, 16, rand(80_000, 17)), 5.0),
    ("random-mulaw-body", lambda: wav_raw(7, 8, rand(40_000, 19)), 5.0),
    # 32,000 samples a channel written at 8 kHz: four seconds of line noise on both sides.
    ("noise-stereo-8k", lambda: stereo(noise(2.0, level=0.05), noise(2.0, level=0.05, seed=5), 8000), 4.0),
]


@pytest.mark.parametrize(("make", "seconds"), [pytest.param(m, s, id=i) for i, m, s in WITHOUT_SPEECH])
def test_a_recording_without_speech_is_refused_with_the_reason(
    tmp_path: Path, engines: Engines, rules, make: Callable[[], bytes], seconds: float
) -> None:
    with pytest.raises(NoSpeech) as caught:
        run(tmp_path, "call.wav", make(), engines, rules, channels="auto")
    reason = str(caught.value)
    found = re.fullmatch(REFUSED, reason)
    assert found, reason
    assert float(found[1]) == seconds and float(found[2]) < 1.0
    assert not list(tmp_path.glob("*redacted*")), "no redacted copy of a call that is not scored"


@pytest.mark.parametrize("name", ["noise.wav", "noise.mp3", "noise.bin"])
def test_random_bytes_are_refused_as_unreadable_audio(tmp_path: Path, engines: Engines, rules,
                                                       name: str) -> None:
    with pytest.raises(AudioError) as caught:
        run(tmp_path, name, rand(200_000, 23), engines, rules)
    assert not isinstance(caught.value, NoSpeech), "no decoder reads these: the reason is the format"
    assert "audio" in str(caught.value)


@pytest.mark.parametrize(
    ("make", "channels", "heard"),
    [
        # A real two-second recording, and a synthetic phrase.
        pytest.param(lambda: (AUDIO / "weather_16k.flac").read_bytes(), "mono", "weather", id="real-2s"),
        pytest.param(lambda: (AUDIO / "short_16k.wav").read_bytes(), "mono", "testing", id="short-16k"),
        # The fewest words a phrase can bring: tiny.en is sure of two of these four.
        pytest.param(lambda: (AUDIO / "short_8k.wav").read_bytes(), "mono", "three", id="short-8k-line"),
        pytest.param(lambda: wav(hissing(padded(speech(8000), rate=8000)), rate=8000), "mono", "three",
                     id="speech-on-a-noisy-8k-line"),
        pytest.param(lambda: stereo(padded(speech()), np.zeros(16000, np.float32)), "stereo", "testing",
                     id="customer-silent"),
    ],
)
def test_speech_is_still_scored(tmp_path: Path, engines: Engines, rules, make: Callable[[], bytes],
                                channels: str, heard: str) -> None:
    card = run(tmp_path, "call.wav", make(), engines, rules, channels=channels)
    assert heard in " ".join(s["text"] for s in card["transcript"]).lower()
    assert card["models"]["asr"]["voice_activity_s"] > 1.0


def test_the_command_line_prints_the_reason_and_exits_non_zero(tmp_path: Path, engines: Engines,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'qa.db'}")
    monkeypatch.setattr("qa_service.pipeline.load_engines", lambda *_a, **_k: engines)  # loaded once above
    noisy = tmp_path / "noise.wav"
    noisy.write_bytes(wav(noise(5.0)))
    out = tmp_path / "out"
    code = main(["process", str(noisy), *RULES, "--agent-id", "agent-mira", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "noise: failed: no speech found in the recording: 5.0 s of audio" in err
    assert not out.exists() or not list(out.iterdir()), "no scorecard for a recording without speech"
    # Nothing is stored for the agent: a recording without speech is in none of their figures.
    from qa_service.storage import open_repository

    repo = open_repository(f"sqlite:///{tmp_path / 'qa.db'}")
    try:
        cards, summary = repo.agent_scorecards("agent-mira")
        assert cards == [] and summary.count == 0
    finally:
        repo.dispose()
