"""Typed records that flow between the pipeline stages.

decode -> Audio; channels -> Channels; transcribe -> Heard (a Transcription per line); language ->
Heard; speakers -> Transcript; redact -> Redacted; score -> ScoreResult; pipeline.build_scorecard ->
Scorecard (the stored and returned v1 format).
Records are frozen: a stage makes new ones rather than changing what it was given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import numpy as np

Speaker = Literal["agent", "customer", "unknown"]
# Whose voice a line carries: both parties ("call", a mono recording) or one of them.
Role = Literal["call", "agent", "customer"]
ChannelLayout = Literal["auto", "stereo", "stereo-agent-right", "mono"]
# How a conversation was held: a phone call (audio), or written (chat, e-mail, instant messages).
Conversation = Literal["call", "chat", "email", "im"]
CONVERSATIONS: tuple[str, ...] = ("call", "chat", "email", "im")
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Audio:
    """Decoded audio: one float32 array per channel at SAMPLE_RATE, and what it came from."""

    channels: tuple[np.ndarray, ...]
    duration_s: float
    source_format: str
    source_rate: int
    source_channels: int
    sample_rate: int = SAMPLE_RATE


@dataclass(frozen=True)
class Channel:
    """One line of a call to transcribe: its 16 kHz samples, whose voice it carries, and whether it is
    telephone-band (nothing above about 4 kHz: stages.bandfill.band_edge)."""

    samples: np.ndarray
    role: Role
    telephone: bool = False


@dataclass(frozen=True)
class Channels:
    """The lines of a call as they are transcribed: one ("call") for mono, the agent's then the
    customer's for stereo, and the layout asked for and used."""

    lines: tuple[Channel, ...]
    layout: Literal["mono", "stereo"]
    requested: ChannelLayout = "auto"
    agent_channel: Literal["left", "right"] | None = None  # stereo only: the recording's channel


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class Segment:
    """One stretch of speech by one speaker; times in seconds from the start of the call."""

    speaker: Speaker
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    confidence: float | None = None


@dataclass(frozen=True)
class Transcription:
    """What a recogniser made of one line, and how (the shape of faster-whisper's TranscriptionInfo).

    A transcriber returns one per call of its `transcribe` and keeps nothing of it: the same model
    can serve several calls at once.
    """

    segments: tuple[Segment, ...]  # speaker "unknown": roles are named by the speakers stage
    # The language the words were decoded in and the model's probability for it (1.0 when it was
    # given, not detected); None when nothing was decoded.
    language: str | None = None
    language_probability: float | None = None
    # Whether the decode was told the caller's vocabulary, and the phrases it was told.
    biased: bool = False
    vocabulary: tuple[str, ...] = ()
    # Seconds of the line the voice detector took for speech; None when the transcriber has none.
    voice_s: float | None = None
    # Whether the model knows languages other than English: an English-only one writes any speech
    # as English, so its words may be of another language (stages.language).
    multilingual: bool = False
    # The model and the options it decoded with (WhisperTranscriber.describe); {} when not said.
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def word_count(self) -> int:
        return sum(len(s.words) for s in self.segments)


@dataclass(frozen=True)
class LanguageHeard:
    """The language a multilingual model hears in a call's first speech, with its probability and
    English's."""

    language: str
    probability: float
    english: float
    model: str


@dataclass(frozen=True)
class LanguageSwitch:
    """A stretch of one line that an English-only model was unsure of, heard by a multilingual model in
    another language and decoded again by it (a call that goes on in another language than it opened
    in): the line's index, the stretch's times, the language heard, English's probability, the model."""

    line: int
    start: float
    end: float
    language: str
    english: float
    model: str


@dataclass(frozen=True)
class Heard:
    """A call as the recogniser heard it, line by line (in Channels order), before speakers are named."""

    lines: tuple[Transcription, ...]
    # The record of the model that decoded the call; when its lines were decoded by different models,
    # of the wideband one (each line's own is in `lines`).
    model: dict[str, Any] = field(default_factory=dict)
    # Set when the call's language was checked by a multilingual model (stages.language).
    language_detection: LanguageHeard | None = None
    # Stretches decoded again in another language after the call opened in English (stages.language).
    switches: tuple[LanguageSwitch, ...] = ()

    @property
    def language(self) -> str:
        """The language of the line with the most words; English when no line has words."""
        spoken = [(t.language, t.word_count) for t in self.lines if t.language and t.word_count]
        return max(spoken, key=lambda x: x[1])[0] if spoken else "en"


@dataclass(frozen=True)
class Transcript:
    """A call as text, with how it was made (model and options) for the scorecard."""

    segments: tuple[Segment, ...]
    duration_s: float
    language: str = "en"
    source: Literal["audio", "text"] = "audio"
    model: dict[str, Any] = field(default_factory=dict)
    # Per party, when their voice is heard in the audio (seconds from the start, sorted and merged);
    # empty for calls that came as text. Talk time and silence are measured on these.
    speech: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    # How the conversation was held; None when the input did not say (the pipeline settles it).
    channel: Conversation | None = None
    # When the first turn was written, for transcripts whose turns carry dates and times (segment
    # times are then seconds from this moment); None otherwise.
    started_at: datetime | None = None


@dataclass(frozen=True)
class Redaction:
    """One span of personal data: where it was in the transcript and in the audio."""

    entity_type: str
    segment: int
    char_start: int
    char_end: int
    start: float
    end: float
    speaker: Speaker
    score: float = 1.0


@dataclass(frozen=True)
class Redacted:
    """The transcript with personal data replaced by <ENTITY_TYPE>, segment for segment."""

    transcript: Transcript
    redactions: tuple[Redaction, ...]


@dataclass(frozen=True)
class Evidence:
    """Utterances behind a verdict: the segments (by index) and their span."""

    segments: tuple[int, ...]
    start: float
    end: float
    speaker: Speaker
    text: str


@dataclass(frozen=True)
class ResponseMeasure:
    """A response-time criterion's measurement: the wait that decided it and the limit it had.

    Times of day (`asked_at`, `replied_at`, ISO 8601) when the conversation's turns carried dates and
    times; the segment times are in the evidence either way.
    """

    measure: Literal["longest", "first"]
    channel: str
    limit_s: float | None  # None: no limit for this channel (the criterion did not apply)
    wait_s: float | None  # the deciding wait; None when nothing was answered
    answered: int  # customer messages (runs of them) the agent answered
    mean_wait_s: float | None
    unanswered: bool  # the conversation ended on customer messages without a reply
    asked_at: str | None = None
    replied_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The scorecard's `response` block of a criterion."""
        return {"measure": self.measure, "channel": self.channel, "limit_s": self.limit_s,
                "wait_s": None if self.wait_s is None else round(self.wait_s, 1),
                "answered": self.answered,
                "mean_wait_s": None if self.mean_wait_s is None else round(self.mean_wait_s, 1),
                "unanswered": self.unanswered, "asked_at": self.asked_at, "replied_at": self.replied_at}


@dataclass(frozen=True)
class CriterionResult:
    id: str
    title: str
    section: str
    passed: bool
    points: float
    max_points: float
    evidence: tuple[Evidence, ...] = ()
    applicable: bool = True
    reason: str = ""
    auto_fail: bool = False  # failing it fails the call, whatever the score
    # The recogniser's mean confidence in the deciding words and how closely they followed the phrase
    # (1.0: word for word); None when no words decided (nothing like the phrase was heard).
    confidence: float | None = None
    match: float | None = None
    # Why this verdict may be wrong (a near match where the recogniser was unsure, an uncertain
    # criterion it must follow); empty when the evidence is firm.
    doubt: str = ""
    response: ResponseMeasure | None = None  # response-time criteria only


@dataclass(frozen=True)
class Violation:
    id: str
    kind: Literal["prohibited", "outdated_policy"]
    title: str
    evidence: Evidence
    detail: str
    auto_fail: bool = False
    policy_id: str | None = None
    confidence: float | None = None
    match: float | None = None
    doubt: str = ""
    # Outdated-policy mentions: what the policy pack says one costs (note, deduct, auto_fail) and the
    # percentage points it takes off the score (once per fact), so a review can re-total the card alone.
    consequence: Literal["note", "deduct", "auto_fail"] | None = None
    deducted_points: float = 0.0


@dataclass(frozen=True)
class ScoreResult:
    criteria: tuple[CriterionResult, ...]
    violations: tuple[Violation, ...]
    score: float
    auto_fail: bool
    passed: bool
    sections: dict[str, dict[str, float]] = field(default_factory=dict)
    # What a person should listen to: outdated-policy mentions resting on a number the recogniser was
    # unsure of, prohibited phrases and outdated values nearly heard. Counted only once a reviewer
    # confirms them.
    to_check: tuple[Violation, ...] = ()
    # A FAIL that rests on weak evidence: it would be a PASS if the doubtful verdicts went the other
    # way. Such a verdict waits for a reviewer; the reasons say what to check.
    provisional: bool = False
    provisional_reasons: tuple[str, ...] = ()
    pass_mark: float | None = None  # the rubric's, so the scorecard can be re-totalled on its own
    deducted_points: float = 0.0  # percentage points outdated-policy mentions took off the score


@dataclass(frozen=True)
class CallMeta:
    """What the caller told us about a call."""

    call_id: str
    agent_id: str
    call_date: date
    channels: ChannelLayout = "auto"
    # How the conversation was held, when the sender said (a form field, --channel); None: the input
    # says, else audio is a call and a transcript a chat (intake.settle_channel).
    channel: Conversation | None = None


@dataclass(frozen=True)
class RulesRef:
    id: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Scorecard:
    """A scored call in scorecard format v1 (plus extensions); `to_dict` is what is stored and served."""

    call_id: str
    agent_id: str
    call_date: date
    duration_s: float
    language: str
    rubric: RulesRef
    policies: RulesRef
    transcript: tuple[Segment, ...]
    redactions: tuple[Redaction, ...]
    result: ScoreResult
    models: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    format: str = "scorecard/v1"
    # Token lengths per utterance of the redacted transcript (qa_service/rescan.py), so that a rescore
    # cuts the same tokens without the tokenizer; None: not kept.
    tokens: dict[str, Any] | None = None
    channel: Conversation = "call"
    started_at: datetime | None = None  # when the first turn was written (transcripts with dates)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict in scorecard format v1."""
        return {
            "format": self.format,
            "call_id": self.call_id,
            "agent_id": self.agent_id,
            "call_date": self.call_date.isoformat(),
            "channel": self.channel,
            **({"started_at": self.started_at.isoformat()} if self.started_at is not None else {}),
            "duration_s": round(self.duration_s, 3),
            "language": self.language,
            "rubric": asdict(self.rubric),
            "policies": asdict(self.policies),
            "models": self.models,
            "transcript": [
                {"speaker": s.speaker, "start": _t(s.start), "end": _t(s.end), "text": s.text,
                 **({"confidence": round(s.confidence, 3)} if s.confidence is not None else {}),
                 **({"words": [word_row(w) for w in s.words]} if s.words else {})}
                for s in self.transcript
            ],
            "redactions": [
                {"entity_type": x.entity_type, "start": _t(x.start), "end": _t(x.end), "speaker": x.speaker}
                for x in self.redactions
            ],
            "metrics": self.metrics,
            "warnings": list(self.warnings),
            **result_fields(self.result),
            **({"tokens": self.tokens} if self.tokens is not None else {}),
        }


def result_fields(r: ScoreResult) -> dict[str, Any]:
    """The scorecard fields that scoring decides: criteria, violations, sections, score and verdict."""
    return {
        "criteria": [
            {"id": c.id, "title": c.title, "section": c.section, "passed": c.passed,
             "applicable": c.applicable, "points": c.points, "max_points": c.max_points,
             "auto_fail": c.auto_fail, "reason": c.reason, **_certainty(c.confidence, c.match, c.doubt),
             **({"response": c.response.to_dict()} if c.response is not None else {}),
             "evidence": [_evidence(e) for e in c.evidence]}
            for c in r.criteria
        ],
        "violations": [_violation(v) for v in r.violations],
        "to_check": [_violation(v) for v in r.to_check],
        "sections": r.sections,
        "score": round(r.score, 2),
        "deducted_points": round(r.deducted_points, 2),
        "auto_fail": r.auto_fail,
        "passed": r.passed,
        **({"pass_mark": r.pass_mark} if r.pass_mark is not None else {}),
        "provisional": r.provisional,
        "provisional_reasons": list(r.provisional_reasons),
    }


def violation_fields(v: Violation) -> dict[str, Any]:
    """A violation (or item to check) as the scorecard stores it."""
    return _violation(v)


def _violation(v: Violation) -> dict[str, Any]:
    cost = {"consequence": v.consequence, "deducted_points": v.deducted_points} \
        if v.consequence is not None else {}
    return {"id": v.id, "kind": v.kind, "policy_id": v.policy_id, "title": v.title,
            "auto_fail": v.auto_fail, **cost, "detail": v.detail,
            **_certainty(v.confidence, v.match, v.doubt), **_evidence(v.evidence)}


def _certainty(confidence: float | None, match: float | None, doubt: str) -> dict[str, Any]:
    return {"confidence": None if confidence is None else round(confidence, 3),
            "match": None if match is None else round(match, 3), "doubt": doubt}


def mean_word_probability(segments: Iterable[Segment]) -> float | None:
    """Mean probability the recogniser gave the segments' words; None when they have no word timings."""
    probs = [w.probability for s in segments for w in s.words]
    return sum(probs) / len(probs) if probs else None


def _t(seconds: float) -> float:
    return round(float(seconds), 2)


def word_row(word: Word) -> list[Any]:
    """A word of the redacted transcript as stored: [text, start, end, recogniser confidence].

    Rescoring reads them back (`word_from_row`), so a stored call is scored on the same word times
    and confidences it was first scored on.
    """
    return [word.text.strip(), _t(word.start), _t(word.end), round(float(word.probability), 3)]


def word_from_row(row: Sequence[Any]) -> Word:
    """A stored word row back as a Word."""
    text, start, end, probability = row
    return Word(" " + str(text), float(start), float(end), float(probability))


def _evidence(e: Evidence) -> dict[str, Any]:
    return {"start": _t(e.start), "end": _t(e.end), "speaker": e.speaker, "text": e.text,
            "segments": list(e.segments)}
