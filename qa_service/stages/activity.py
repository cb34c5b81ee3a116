"""When each party's voice is heard, from the audio levels: the basis of talk time and silence.

Whisper's word times are made for reading along, not for stopwatches: they end a little before a
word's sound does, and turns look about 10% shorter than they are. So talk time is measured on
the audio itself: 10 ms frames louder than the channel's noise floor by THRESHOLD_DB are voiced,
each voiced run is held HANGOVER_S longer (as telephone voice-activity detectors do, so that the
fading end of a word counts), and runs shorter than MIN_RUN_S (clicks) are dropped. A party's
speech is the voiced audio of their channel near their words; on a mono recording, the voiced
audio near their words, split between the parties where both spoke without a pause.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

import numpy as np

from qa_service.records import SAMPLE_RATE, Segment

Interval = tuple[float, float]

FRAME_S = 0.01
THRESHOLD_DB = 10.0
# The noise floor is the level most frames of the channel reach (its quietest tenth)...
FLOOR_QUANTILE = 0.1
# ...but never below this: digital silence has no floor to speak of.
MIN_FLOOR_DB = -75.0
HANGOVER_S = 0.2
MIN_RUN_S = 0.1
# Voiced audio within this distance of a party's words is theirs.
NEAR_WORDS_S = 0.5


def voiced_intervals(samples: np.ndarray) -> list[Interval]:
    """Stretches of the channel louder than its noise floor, held HANGOVER_S after each."""
    hop = int(FRAME_S * SAMPLE_RATE)
    n = samples.size // hop
    if n == 0:
        return []
    frames = np.asarray(samples[: n * hop], dtype=np.float32).reshape(n, hop)
    level = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
    floor = max(float(np.quantile(level, FLOOR_QUANTILE)), MIN_FLOOR_DB)
    voiced = level > floor + THRESHOLD_DB
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = [(a * FRAME_S, b * FRAME_S) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    duration = n * FRAME_S
    return union(
        (a, min(b + HANGOVER_S, duration)) for a, b in runs if b - a >= MIN_RUN_S
    )


def near_words(voiced: Sequence[Interval], words: Sequence[Segment]) -> list[Interval]:
    """The voiced stretches that come within NEAR_WORDS_S of these words (one party's channel)."""
    near = _Spans(union((s.start - NEAR_WORDS_S, s.end + NEAR_WORDS_S) for s in words))
    return [run for run in voiced if near.touches(run)]


def split_by_words(voiced: Sequence[Interval], segments: Sequence[Segment],
                   roles: Sequence[str] = ("agent", "customer")) -> dict[str, list[Interval]]:
    """Each party's share of the voiced stretches of a mono recording.

    A stretch under one party's words is theirs; under both parties' words (a quick hand-over),
    it is split halfway between the words where they change hands. A stretch under no words (the
    recogniser's times are a little tight) goes the same way by the words near it.
    """
    own = {role: [s for s in segments if s.speaker == role] for role in roles}
    under = {role: _Spans(union((s.start, s.end) for s in segs)) for role, segs in own.items()}
    near = {role: _Spans(union((s.start - NEAR_WORDS_S, s.end + NEAR_WORDS_S) for s in segs))
            for role, segs in own.items()}
    out: dict[str, list[Interval]] = {role: [] for role in roles}
    for run in voiced:
        mine = [role for role in roles if under[role].touches(run)]
        if not mine:
            mine = [role for role in roles if near[role].touches(run)]
        if len(mine) == 1:
            out[mine[0]].append(run)
        elif mine:
            for role, part in _nearest_words(run, [s for s in segments if s.speaker in mine]):
                out[role].append(part)
    return {role: union(ivs) for role, ivs in out.items()}


class _Spans:
    """Sorted, merged intervals that answer "does this interval overlap any of you?" by bisection."""

    def __init__(self, merged: list[Interval]):
        self.merged = merged
        self.ends = [end for _, end in merged]

    def touches(self, iv: Interval) -> bool:
        i = bisect.bisect_right(self.ends, iv[0])  # the first interval ending after iv starts
        return i < len(self.merged) and self.merged[i][0] < iv[1]


def _nearest_words(run: Interval, segments: Sequence[Segment]) -> list[tuple[str, Interval]]:
    """The run cut into pieces, each given to the speaker of the nearest segment."""
    segs = sorted(segments, key=lambda s: (s.start, s.end))
    cuts: list[tuple[float, str]] = [(run[0], segs[0].speaker)]
    for prev, nxt in zip(segs, segs[1:], strict=False):
        if nxt.speaker != prev.speaker:
            cuts.append(((prev.end + nxt.start) / 2, nxt.speaker))
    pieces = []
    for (at, role), (until, _) in zip(cuts, cuts[1:] + [(run[1], "")], strict=True):
        lo, hi = max(at, run[0]), min(until, run[1])
        if hi > lo:
            pieces.append((role, (lo, hi)))
    return pieces


def union(intervals: Iterable[Interval], join_gap: float = 0.0) -> list[Interval]:
    """Sorted, merged intervals; gaps up to `join_gap` are bridged."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + join_gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Where two sorted, merged interval lists overlap."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """The parts of sorted, merged `a` outside sorted, merged `b`."""
    out: list[Interval] = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k, cur = j, start
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < end:
            out.append((cur, end))
    return out


def length(intervals: Iterable[Interval]) -> float:
    """Total duration of non-overlapping intervals."""
    return sum(end - start for start, end in intervals)
