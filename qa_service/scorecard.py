"""The scorecard as it is stored and served (format v1), as one typed read model.

`Scorecard.to_dict()` (records.py) writes it; `ScorecardDoc` reads it back and is the schema that
`/openapi.json` publishes for the scorecard routes. Fields added by later versions of the service
are optional, so scorecards stored before them still read; fields this model does not name are
kept (`extra="allow"`), so a reader never drops what a newer writer added.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Speaker = Literal["agent", "customer", "unknown"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class RulesRefDoc(_Doc):
    id: str
    version: str
    sha256: str = ""


class SegmentDoc(_Doc):
    speaker: Speaker
    start: float
    end: float
    text: str = Field(description="Redacted: personal data is replaced by <ENTITY_TYPE>")
    confidence: float | None = Field(None, description="How sure the speaker label is (mono calls)")
    words: list[tuple[str, float, float, float]] = Field(
        default_factory=list, description="[text, start, end, recogniser confidence], redacted like the text")


class RedactionDoc(_Doc):
    entity_type: str
    start: float
    end: float
    speaker: Speaker


class EvidenceDoc(_Doc):
    start: float
    end: float
    speaker: Speaker
    text: str
    segments: list[int] = Field(default_factory=list, description="Indices into `transcript`")


class _Certainty(_Doc):
    confidence: float | None = Field(None, description="The recogniser's mean confidence in the deciding "
                                                       "words")
    match: float | None = Field(None, description="How closely the words followed the phrase (1.0: word for "
                                                  "word)")
    doubt: str = Field("", description="Why this verdict may be wrong; empty when the evidence is firm")


class CriterionDoc(_Certainty):
    id: str
    title: str = ""
    section: str = ""
    passed: bool
    applicable: bool = True
    points: float
    max_points: float
    auto_fail: bool = False
    reason: str = ""
    evidence: list[EvidenceDoc] = Field(default_factory=list)


class ViolationDoc(_Certainty):
    id: str
    kind: Literal["prohibited", "outdated_policy"]
    policy_id: str | None = None
    title: str = ""
    auto_fail: bool = False
    consequence: Literal["note", "deduct", "auto_fail"] | None = Field(
        None, description="Outdated-policy items: what the policy pack says one costs")
    deducted_points: float = Field(0.0, description="Percentage points it takes off the score (once per "
                                                    "fact); an item to check, once confirmed")
    detail: str = ""
    start: float
    end: float
    speaker: Speaker
    text: str = ""
    segments: list[int] = Field(default_factory=list)
    repeat: bool = Field(False, description="Outdated policy stated after the agent completed the refresher "
                                            "for the pack (`trained_on`, `trained_version`)")
    trained_on: date | None = None
    trained_version: str | None = None


class FindingDoc(_Doc):
    """Something about the call beyond what was said: it changes no score, but puts the call in the review
    queue."""

    id: str
    kind: Literal["certification_lapsed"]
    certification: str = Field(description="The certification the rubric or policy pack requires")
    required_by: dict[str, str] = Field(description="kind (rubric | policy_pack), id, version")
    detail: str = ""
    expired_on: date | None = None


class SectionDoc(_Doc):
    points: float
    max_points: float
    score: float


class ScorecardDoc(_Doc):
    """A scored call: transcript, redactions, criteria, violations, items to check, totals, verdict."""

    format: str = "scorecard/v1"
    call_id: str
    agent_id: str
    call_date: date
    duration_s: float
    language: str = "en"
    rubric: RulesRefDoc
    policies: RulesRefDoc
    models: dict[str, Any] = Field(default_factory=dict, description="Models and options used, with hashes")
    transcript: list[SegmentDoc]
    redactions: list[RedactionDoc] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict, description="Talk time, silence, overtalk, pace")
    warnings: list[str] = Field(default_factory=list)
    criteria: list[CriterionDoc]
    violations: list[ViolationDoc]
    to_check: list[ViolationDoc] = Field(
        default_factory=list, description="Nearly heard: counted only once a reviewer confirms them")
    findings: list[FindingDoc] = Field(
        default_factory=list, description="E.g. certification_lapsed: the agent held no valid certification "
                                          "the rules require on the call's date; no points, review queue")
    sections: dict[str, SectionDoc] = Field(default_factory=dict)
    score: float
    deducted_points: float = Field(0.0, description="Percentage points outdated-policy violations took "
                                                    "off the score")
    auto_fail: bool
    passed: bool
    pass_mark: float | None = None
    provisional: bool = Field(False, description="A FAIL resting on weak evidence, waiting for a reviewer")
    provisional_reasons: list[str] = Field(default_factory=list)


class ReviewedScorecardDoc(ScorecardDoc):
    """A scorecard with its `review` section: reviewed verdicts, who, when, why, and the totals after
    review."""

    review: dict[str, Any]


def read_scorecard(data: dict[str, Any]) -> ScorecardDoc:
    """A stored scorecard as the typed read model (pydantic ValidationError when it is not one)."""
    return ScorecardDoc.model_validate(data)
