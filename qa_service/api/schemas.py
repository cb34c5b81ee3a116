"""Request and response bodies of the API (what /openapi.json shows)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qa_service.storage.repository import StoredCall, StoredRules, StoredScorecard

# Ids appear in URLs and logs: printable, no spaces or slashes.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$"
Channels = Literal["auto", "stereo", "stereo-agent-right", "mono"]


class Error(BaseModel):
    detail: str


class RulesRefOut(BaseModel):
    id: str
    version: str


class CallAccepted(BaseModel):
    id: str = Field(description="The service's id for the call (a UUID)")
    status: str
    external_id: str | None = None


class CallOut(BaseModel):
    id: str
    external_id: str | None
    agent_id: str
    call_date: date
    status: Literal["queued", "processing", "done", "failed"]
    failure_reason: str | None
    source: str
    input_kind: str
    channels: str
    rubric: RulesRefOut
    policies: RulesRefOut
    attempts: int
    created_at: datetime
    updated_at: datetime
    scorecard_url: str | None = None

    @classmethod
    def of(cls, call: StoredCall) -> CallOut:
        """Response body for a stored call."""
        return cls(
            id=call.id, external_id=call.external_id, agent_id=call.agent_id, call_date=call.call_date,
            status=call.status, failure_reason=call.failure_reason, source=call.source,
            input_kind=call.input_kind, channels=call.channels,
            rubric=RulesRefOut(id=call.rubric_id, version=call.rubric_version),
            policies=RulesRefOut(id=call.policy_pack_id, version=call.policy_pack_version),
            attempts=call.attempts, created_at=call.created_at, updated_at=call.updated_at,
            scorecard_url=f"/v1/calls/{call.id}/scorecard" if call.status == "done" else None,
        )


class ScorecardSummary(BaseModel):
    call_id: str
    version: int
    call_date: date
    score: float
    passed: bool
    auto_fail: bool
    rubric: RulesRefOut
    created_at: datetime

    @classmethod
    def of(cls, card: StoredScorecard) -> ScorecardSummary:
        """One line of an agent's list."""
        return cls(call_id=card.call_id, version=card.version, call_date=card.call_date, score=card.score,
                   passed=card.passed, auto_fail=card.auto_fail,
                   rubric=RulesRefOut(id=card.rubric_id, version=card.rubric_version),
                   created_at=card.created_at)


class Aggregate(BaseModel):
    count: int
    mean_score: float | None
    pass_rate: float | None = Field(description="Share of calls that passed, 0..1")
    auto_fail_count: int


class AgentScorecards(BaseModel):
    agent_id: str
    date_from: date | None = Field(None, alias="from")
    date_to: date | None = Field(None, alias="to")
    aggregate: Aggregate
    scorecards: list[ScorecardSummary]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class RulesOut(BaseModel):
    id: str
    version: str
    sha256: str
    created_at: datetime
    created: bool | None = None

    @classmethod
    def of(cls, rules: StoredRules, created: bool | None = None) -> RulesOut:
        """Response body for a stored rubric or policy pack."""
        return cls(id=rules.id, version=rules.version, sha256=rules.sha256, created_at=rules.created_at,
                   created=created)


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    database: str
    queue: str
    version: str


class TelephonyEvent(BaseModel):
    """A finished call as a telephony system posts it."""

    model_config = ConfigDict(extra="ignore")

    external_call_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    agent_id: str = Field(min_length=1, max_length=100, pattern=ID_PATTERN)
    start_time: datetime
    recording_url: str = Field(min_length=8, max_length=2000)
    channels: Channels = "auto"
    rubric_id: str = Field(min_length=1, max_length=100)
    policy_pack_id: str = Field(min_length=1, max_length=100)
    rubric_version: str | None = None
    policy_pack_version: str | None = None


ScorecardJSON = dict[str, Any]
