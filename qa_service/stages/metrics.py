"""Conversation metrics from a transcript's segment times: talk time, silence, overtalk, pace.

Definitions (all in seconds unless said otherwise):
  talk_time_s        per speaker, the union of that speaker's segments (overlaps counted once), with
                     pauses shorter than TURN_PAUSE_S inside a turn counted as talking: a breath
                     between two sentences is part of the turn (the recogniser splits segments there)
  silence_s          time between the first and the last word of the call that nobody speaks;
                     ringing before the answer and time after the last word are not dead air
  longest_silence_s  the longest such gap
  overtalk_s         time when the agent and the customer speak at once
  agent_talk_ratio   agent talk time / (agent + customer talk time); None when nobody spoke
  words_per_minute   per speaker, words spoken / talk time in minutes; None without talk time
  interruptions      per speaker, how often they started talking while the other was mid-segment
                     and the other went on for at least INTERRUPTION_MIN_OVERLAP_S more
Segments with speaker "unknown" count towards silence and appear under "unknown" when present.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from qa_service.records import Segment, Transcript

# A pause this short between one speaker's segments is a breath inside the turn, not a hand-over.
TURN_PAUSE_S = 1.0
# Shorter overlaps at a turn change are ordinary hand-over, not an interruption.
INTERRUPTION_MIN_OVERLAP_S = 0.5
ROLES = ("agent", "customer")

Interval = tuple[float, float]


def call_metrics(transcript: Transcript) -> dict[str, Any]:
    """Talk time, silence, overtalk, talk ratio, pace and interruptions for one transcript."""
    segs = [s for s in transcript.segments if s.end > s.start]
    by_role = {role: _union((s.start, s.end) for s in segs if s.speaker == role) for role in ROLES}
    unknown = _union((s.start, s.end) for s in segs if s.speaker not in ROLES)
    talk = {role: _length(_union(iv, join_gap=TURN_PAUSE_S)) for role, iv in by_role.items()}
    if unknown:
        talk["unknown"] = _length(unknown)

    speech = _union((s.start, s.end) for s in segs)
    gaps = [b[0] - a[1] for a, b in zip(speech, speech[1:], strict=False)]
    both = talk["agent"] + talk["customer"]
    words = {role: sum(_word_count(s) for s in segs if s.speaker == role) for role in ROLES}
    return {
        "talk_time_s": {k: _r(v) for k, v in talk.items()},
        "silence_s": _r(sum(gaps)),
        "longest_silence_s": _r(max(gaps, default=0.0)),
        "overtalk_s": _r(_length(_intersect(by_role["agent"], by_role["customer"]))),
        "agent_talk_ratio": _r(talk["agent"] / both, 3) if both > 0 else None,
        "words_per_minute": {
            role: _r(words[role] / (talk[role] / 60.0), 1) if talk[role] > 0 else None for role in ROLES
        },
        "interruptions": {role: _interruptions(segs, role) for role in ROLES},
    }


def _interruptions(segs: Sequence[Segment], role: str) -> int:
    other = [s for s in segs if s.speaker in ROLES and s.speaker != role]
    count = 0
    for s in segs:
        if s.speaker != role:
            continue
        if any(o.start < s.start and o.end - s.start >= INTERRUPTION_MIN_OVERLAP_S for o in other):
            count += 1
    return count


def _word_count(s: Segment) -> int:
    return len(s.words) if s.words else len(s.text.split())


def _union(intervals: Iterable[Interval], join_gap: float = 0.0) -> list[Interval]:
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + join_gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
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


def _length(intervals: list[Interval]) -> float:
    return sum(end - start for start, end in intervals)


def _r(x: float, digits: int = 2) -> float:
    return round(float(x), digits)
