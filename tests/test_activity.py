"""Speech activity from audio levels, interval arithmetic, and talk time measured on the audio."""

from __future__ import annotations

import numpy as np
import pytest

from qa_service.records import SAMPLE_RATE, Segment, Transcript
from qa_service.stages import activity
from qa_service.stages.metrics import call_metrics


def _signal(bursts: list[tuple[float, float]], seconds: float, hiss: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = np.random.default_rng(0).normal(0, hiss, t.size) if hiss else np.zeros(t.size)
    for a, b in bursts:
        on = (t >= a) & (t < b)
        x[on] += 0.2 * np.sin(2 * np.pi * 180 * t[on])
    return x.astype(np.float32)


@pytest.mark.parametrize("hiss", [0.0, 0.002])
def test_voiced_stretches_follow_the_sound_with_a_hangover(hiss):
    x = _signal([(1.0, 2.5), (4.0, 4.6)], 6.0, hiss)
    got = activity.voiced_intervals(x)
    assert len(got) == 2
    for (a, b), (want_a, want_b) in zip(got, [(1.0, 2.5), (4.0, 4.6)], strict=True):
        assert a == pytest.approx(want_a, abs=0.02)
        assert b == pytest.approx(want_b + activity.HANGOVER_S, abs=0.02)


def test_clicks_and_silence_are_not_speech():
    assert activity.voiced_intervals(np.zeros(SAMPLE_RATE * 3, np.float32)) == []
    assert activity.voiced_intervals(_signal([(1.0, 1.05)], 3.0)) == []
    assert activity.voiced_intervals(np.zeros(10, np.float32)) == []


@pytest.mark.parametrize(
    ("a", "b", "union", "inter", "minus"),
    [
        ([(0, 2)], [(1, 3)], [(0, 3)], [(1, 2)], [(0, 1)]),
        ([(0, 1), (2, 3)], [(0.5, 2.5)], [(0, 3)], [(0.5, 1), (2, 2.5)], [(0, 0.5), (2.5, 3)]),
        ([(0, 5)], [(1, 2), (3, 4)], [(0, 5)], [(1, 2), (3, 4)], [(0, 1), (2, 3), (4, 5)]),
        ([(0, 1)], [], [(0, 1)], [], [(0, 1)]),
        ([(0, 1)], [(1, 2)], [(0, 2)], [], [(0, 1)]),
    ],
)
def test_interval_arithmetic(a, b, union, inter, minus):
    assert activity.union(a + b) == union
    assert activity.intersect(a, b) == inter
    assert activity.subtract(a, b) == minus


def _seg(speaker, start, end):
    return Segment(speaker, start, end, "words")


def test_each_party_gets_the_voiced_stretches_near_their_words():
    voiced = [(0.9, 2.9), (3.0, 5.2), (9.0, 10.0)]  # the last stretch has no words near it: hold music
    segments = [_seg("agent", 1.0, 2.6), _seg("customer", 3.1, 5.0)]
    assert activity.split_by_words(voiced, segments) == {"agent": [(0.9, 2.9)], "customer": [(3.0, 5.2)]}
    assert activity.near_words(voiced, segments[:1]) == [(0.9, 2.9), (3.0, 5.2)]  # stereo: own channel


def test_a_hand_over_without_a_pause_is_split_between_the_words():
    voiced = [(0.9, 6.0)]
    segments = [_seg("agent", 1.0, 3.0), _seg("customer", 3.4, 5.8), _seg("unknown", 5.0, 5.1)]
    assert activity.split_by_words(voiced, segments) == {"agent": [(0.9, 3.2)], "customer": [(3.2, 6.0)]}


def test_talk_time_comes_from_the_audio_when_there_is_audio():
    segments = (_seg("agent", 1.0, 2.6), _seg("customer", 3.1, 5.0), _seg("agent", 6.0, 7.0))
    text_only = Transcript(segments=segments, duration_s=8.0, source="text")
    heard = Transcript(segments=segments, duration_s=8.0,
                       speech={"agent": ((0.9, 2.9), (5.9, 7.3)), "customer": ((2.8, 5.2),)})
    m_text, m_audio = call_metrics(text_only), call_metrics(heard)
    assert m_text["talk_time_s"] == {"agent": 2.6, "customer": 1.9}
    assert m_audio["talk_time_s"] == {"agent": 3.4, "customer": 2.4}
    assert m_audio["overtalk_s"] == 0.1
    # Silence lies between the first and the last word, where nobody is heard: 5.2 -> 5.9.
    assert m_audio["silence_s"] == 0.7
