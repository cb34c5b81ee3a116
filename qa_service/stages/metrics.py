"""Conversation metrics: talk time, silence, overtalk, pace.

Times come from when each party's voice is heard in the audio (`Transcript.speech`, see
stages/activity.py); calls that came as text have only their segment times, which are used instead.

Definitions (all in seconds unless said otherwise):
  talk_time_s        per speaker, the union of that speaker's speech (overlaps counted once), with
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

from collections.abc import Sequence
from typing import Any

from qa_service.records import Segment, Transcript
from qa_service.stages.activity import intersect, length, union

# A pause this short between one speaker's segments is a breath inside the turn, not a hand-over.
TURN_PAUSE_S = 1.0
# Shorter overlaps at a turn change are ordinary hand-over, not an interruption.
INTERRUPTION_MIN_OVERLAP_S = 0.5
ROLES = ("agent", "customer")


def call_metrics(transcript: Transcript) -> dict[str, Any]:
    """Talk time, silence, overtalk, talk ratio, pace and interruptions for one transcript."""
    segs = [s for s in transcript.segments if s.end > s.start]
    if transcript.speech:
        by_role = {role: union(transcript.speech.get(role, ())) for role in ROLES}
    else:
        by_role = {role: union((s.start, s.end) for s in segs if s.speaker == role) for role in ROLES}
    unknown = union((s.start, s.end) for s in segs if s.speaker not in ROLES)
    talk = {role: length(union(iv, join_gap=TURN_PAUSE_S)) for role, iv in by_role.items()}
    if unknown:
        talk["unknown"] = length(unknown)

    first = min((s.start for s in segs), default=0.0)
    last = max((s.end for s in segs), default=0.0)
    heard = union([iv for ivs in by_role.values() for iv in ivs] + unknown)
    speech = intersect(heard, [(first, last)]) if segs else []
    gaps = [b[0] - a[1] for a, b in zip(speech, speech[1:], strict=False)]
    both = talk["agent"] + talk["customer"]
    words = {role: sum(_word_count(s) for s in segs if s.speaker == role) for role in ROLES}
    return {
        "talk_time_s": {k: _r(v) for k, v in talk.items()},
        "silence_s": _r(sum(gaps)),
        "longest_silence_s": _r(max(gaps, default=0.0)),
        "overtalk_s": _r(length(intersect(by_role["agent"], by_role["customer"]))),
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


def _r(x: float, digits: int = 2) -> float:
    return round(float(x), digits)
