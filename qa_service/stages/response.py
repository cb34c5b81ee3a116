"""Response times of a conversation: how long the customer waited for the agent's replies.

Pure functions over a Transcript's segments (one per turn, times in seconds from the first turn).

Definitions:
  wait         from a customer message that has no answer yet to the agent's next turn, both taken
               at their start (the time a chat message or an e-mail was sent). Several customer
               messages in a row wait from the first of them: "Hello?" sent after a first question
               does not restart the clock.
  unanswered   customer messages after the agent's last turn: the transcript ends before any reply,
               so there is nothing to time them against (the thread may still be going on). The rubric
               says whether that fails the criterion (`unanswered: fail`) or is left out (`ignore`).
  first        the first wait of the conversation: the first customer message to the agent's first
               reply after it (an agent's greeting before the customer wrote is no reply).
  longest      the longest wait of the conversation.
Turns of an unknown speaker are left out. Transcripts whose times were estimated from word counts
(no times given) have no response times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qa_service.records import Segment, Transcript


@dataclass(frozen=True)
class Wait:
    """One wait: the customer message it counts from, the agent's reply (None: no reply), in seconds."""

    asked: int  # segment index
    replied: int | None  # segment index; None when the conversation ended first
    seconds: float | None  # None without a reply


@dataclass(frozen=True)
class Waits:
    """A conversation's waits in order, and the unanswered customer message at its end, if any."""

    answered: tuple[Wait, ...]
    unanswered: Wait | None

    @property
    def longest(self) -> Wait | None:
        """The longest answered wait (the first of equals); None without one."""
        best: Wait | None = None
        for w in self.answered:
            if best is None or (w.seconds or 0.0) > (best.seconds or 0.0):
                best = w
        return best

    @property
    def first(self) -> Wait | None:
        """The first answered wait; None without one."""
        return self.answered[0] if self.answered else None

    @property
    def mean_seconds(self) -> float | None:
        """Mean of the answered waits; None without one."""
        seconds = [w.seconds for w in self.answered if w.seconds is not None]
        return sum(seconds) / len(seconds) if seconds else None


def channel_of(transcript: Transcript) -> str:
    """The conversation's channel: as the input said, else a call for audio and a chat for text."""
    if transcript.channel is not None:
        return transcript.channel
    return "call" if transcript.source == "audio" else "chat"


def timed(transcript: Transcript) -> bool:
    """Whether the transcript's times were measured or given, not estimated from word counts."""
    return transcript.model.get("timing") != "estimated"


def waits(segments: Sequence[Segment]) -> Waits:
    """Every wait for an agent's reply in a conversation (segments in the order written)."""
    answered: list[Wait] = []
    pending: int | None = None
    for i, seg in enumerate(segments):
        if seg.speaker == "customer":
            if pending is None:
                pending = i
        elif seg.speaker == "agent" and pending is not None:
            answered.append(Wait(pending, i, max(0.0, seg.start - segments[pending].start)))
            pending = None
    return Waits(tuple(answered), None if pending is None else Wait(pending, None, None))


def duration_words(seconds: float) -> str:
    """A wait as people say it: "45 s", "7 min", "7 min 30 s", "25 h 10 min", "3 d 2 h"."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, rest = divmod(s, 60)
        return f"{m} min" + (f" {rest} s" if rest else "")
    if s < 3 * 86400:
        h, rest = divmod(s, 3600)
        return f"{h} h" + (f" {rest // 60} min" if rest // 60 else "")
    d, rest = divmod(s, 86400)
    return f"{d} d" + (f" {rest // 3600} h" if rest // 3600 else "")
