"""The same audio gives the same scorecard: after any other calls in one worker, and wherever a
conversation sits in a recording (real models: tiny.en, the voice model, spaCy, Presidio)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_service.pipeline import Engines, load_engines, process_audio
from qa_service.records import CallMeta
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.settings import Settings
from qa_service.stages.decode import decode
from tests.test_bad_inputs import stereo

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Engines:
    """What a worker loads by default, loaded once as a long-lived worker holds it."""
    return load_engines(Settings(model_cache_dir=tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def rules() -> tuple[Any, Any]:
    return load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")


def scored(path: Path, engines: Engines, rules: tuple[Any, Any], channels: str = "auto") -> dict[str, Any]:
    meta = CallMeta(path.stem, "agent-tom", date(2026, 10, 20), channels)  # type: ignore[arg-type]
    card = process_audio(path, meta, *rules, engines).to_dict()
    card["models"].pop("stage_seconds", None)  # how long it took is all that may differ
    return card


def test_the_same_call_scored_three_times_between_other_calls_gives_one_scorecard(engines, rules):
    call = SAMPLES / "audio" / "sample-002.flac"
    others = [SAMPLES / "audio" / "sample-001.flac", SAMPLES / "audio" / "sample-003.flac"]
    first = scored(call, engines, rules)
    assert first["violations"], "the call has violations to find"
    for other in others:
        scored(other, engines, rules)
        assert scored(call, engines, rules) == first


def test_one_conversation_five_times_in_a_recording_has_the_same_violations_each_time(
        engines, rules, tmp_path):
    audio = decode(SAMPLES / "audio" / "sample-002.flac")
    left, right = audio.channels
    copies, starts = [], []
    at = 0
    for i in range(5):
        # Pauses of different lengths, so no copy starts where another does on the detector's grid.
        pause = np.zeros(int((9.0 + 0.37 * i) * 16000), np.float32)
        starts.append((at + pause.size) / 16000)
        copies.append((np.concatenate([pause, left]), np.concatenate([pause, right])))
        at += pause.size + left.size
    path = tmp_path / "five-times.wav"
    path.write_bytes(stereo(np.concatenate([c[0] for c in copies]), np.concatenate([c[1] for c in copies])))
    card = scored(path, engines, rules, channels="stereo")
    alone = scored(SAMPLES / "audio" / "sample-002.flac", engines, rules, channels="stereo")
    bounds = [*(t - 1.0 for t in starts), float("inf")]  # a word may start in the pause before it

    def copy(i: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [x for x in items if bounds[i] <= x["start"] < bounds[i + 1]]

    # Each copy is heard word for word alike, and each says what is prohibited where the call alone does.
    heard = [[(s["speaker"], s["text"]) for s in copy(i, card["transcript"])] for i in range(5)]
    assert heard[0] and heard == [heard[0]] * 5
    prohibited = sorted(v["id"] for v in alone["violations"] if v["kind"] == "prohibited")
    assert prohibited, "the conversation has prohibited phrases to find"
    assert [sorted(v["id"] for v in copy(i, card["violations"]) if v["kind"] == "prohibited")
            for i in range(5)] == [prohibited] * 5
    # An outdated policy is a violation of the call, reported once however often it is said.
    assert {v["id"] for v in card["violations"]} == {v["id"] for v in alone["violations"]}
