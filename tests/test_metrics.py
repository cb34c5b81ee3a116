"""Call metrics on hand-built transcripts."""

from __future__ import annotations

import pytest

from qa_service.records import Segment, Transcript, Word
from qa_service.stages.metrics import call_metrics


def _t(*segs, duration=60.0):
    return Transcript(
        segments=tuple(Segment(speaker=sp, start=a, end=b, text=text) for sp, a, b, text in segs),
        duration_s=duration,
    )


A, C, U = "agent", "customer", "unknown"

CASES = [
    pytest.param(
        _t(),
        {"talk_time_s": {A: 0.0, C: 0.0}, "silence_s": 0.0, "longest_silence_s": 0.0, "overtalk_s": 0.0,
         "agent_talk_ratio": None, "words_per_minute": {A: None, C: None},
         "interruptions": {A: 0, C: 0}},
        id="empty",
    ),
    pytest.param(
        # Clean turn-taking with a 1 s and a 3 s gap; the 5 s of ringing before is not dead air.
        _t((A, 5.0, 11.0, "one two three four five six"), (C, 12.0, 15.0, "one two three"),
           (A, 18.0, 20.0, "one two")),
        {"talk_time_s": {A: 8.0, C: 3.0}, "silence_s": 4.0, "longest_silence_s": 3.0, "overtalk_s": 0.0,
         "agent_talk_ratio": 0.727, "words_per_minute": {A: 60.0, C: 60.0},
         "interruptions": {A: 0, C: 0}},
        id="turn-taking",
    ),
    pytest.param(
        # The customer cuts in 2 s before the agent finishes: overtalk and one customer interruption.
        _t((A, 0.0, 10.0, "a b c d e"), (C, 8.0, 12.0, "f g")),
        {"talk_time_s": {A: 10.0, C: 4.0}, "silence_s": 0.0, "longest_silence_s": 0.0, "overtalk_s": 2.0,
         "agent_talk_ratio": 0.714, "words_per_minute": {A: 30.0, C: 30.0},
         "interruptions": {A: 0, C: 1}},
        id="customer-interrupts",
    ),
    pytest.param(
        # A 0.2 s overlap at the hand-over is not an interruption, though it is overtalk.
        _t((C, 0.0, 4.0, "x"), (A, 3.8, 6.0, "y")),
        {"talk_time_s": {A: 2.2, C: 4.0}, "silence_s": 0.0, "longest_silence_s": 0.0, "overtalk_s": 0.2,
         "agent_talk_ratio": 0.355, "words_per_minute": {A: 27.3, C: 15.0},
         "interruptions": {A: 0, C: 0}},
        id="handover-overlap",
    ),
    pytest.param(
        # Overlapping segments of one speaker count once; unknown speech fills silence but is reported apart.
        _t((A, 0.0, 4.0, "a"), (A, 3.0, 6.0, "b"), (U, 8.0, 9.0, "c"), (C, 10.0, 11.0, "d")),
        {"talk_time_s": {A: 6.0, C: 1.0, U: 1.0}, "silence_s": 3.0, "longest_silence_s": 2.0,
         "overtalk_s": 0.0, "agent_talk_ratio": 0.857, "words_per_minute": {A: 20.0, C: 60.0},
         "interruptions": {A: 0, C: 0}},
        id="self-overlap-and-unknown",
    ),
    pytest.param(
        # The agent talks over the customer twice.
        _t((C, 0.0, 10.0, "a"), (A, 2.0, 3.0, "b"), (A, 5.0, 6.0, "c"), (C, 20.0, 21.0, "d")),
        {"talk_time_s": {A: 2.0, C: 11.0}, "silence_s": 10.0, "longest_silence_s": 10.0, "overtalk_s": 2.0,
         "agent_talk_ratio": 0.154, "words_per_minute": {A: 60.0, C: 10.9},
         "interruptions": {A: 2, C: 0}},
        id="agent-interrupts-twice",
    ),
]


@pytest.mark.parametrize(("transcript", "want"), CASES)
def test_call_metrics(transcript, want):
    assert call_metrics(transcript) == want


def test_word_timestamps_count_words_when_present():
    words = tuple(Word(text=w, start=i * 0.5, end=i * 0.5 + 0.4) for i, w in enumerate(["a", "b", "c"]))
    t = Transcript(segments=(Segment("agent", 0.0, 1.5, "a b-c", words=words),), duration_s=2.0)
    assert call_metrics(t)["words_per_minute"]["agent"] == 120.0


@pytest.mark.parametrize(("gap", "agent_talk"), [
    (0.4, 6.4),  # a breath between two sentences of one turn is talk time
    (0.99, 6.99),
    (1.5, 6.0),  # a real pause is not
])
def test_short_pauses_inside_a_turn_count_as_talking(gap: float, agent_talk: float) -> None:
    metrics = call_metrics(_t((A, 0.0, 3.0, "one two three"), (A, 3.0 + gap, 6.0 + gap, "four five six")))
    assert metrics["talk_time_s"][A] == pytest.approx(agent_talk)
    assert metrics["silence_s"] == pytest.approx(gap)  # the gap is still silence on the line
