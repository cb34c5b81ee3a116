"""Policy currency: which agents still state policy that had changed by the day of their calls.

Reads the latest scorecard of each call in a date range, as reviewed; the refresher list is the same
one the rescore impact report prints.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from qa_service.api.agents import check_range
from qa_service.api.deps import ReadScoresKey, RepoDep, SettingsDep
from qa_service.api.schemas import Error
from qa_service.services.calls import with_external_ids
from qa_service.services.reviews import policy_currency as reviewed_currency

router = APIRouter()


class OutdatedMention(BaseModel):
    call_id: str
    external_id: str | None = Field(None, description="The id the call's sender gave it")
    call_date: str
    detail: str
    consequence: str = Field("note", description="What its policy pack says it costs: note, deduct, "
                                                 "auto_fail")
    confirmed: bool = Field(False, description="A reviewer confirmed it (a violation, or an item to check)")


class PolicyCurrency(BaseModel):
    """Per agent and policy fact, the calls in which the agent stated a value or term no longer in force."""

    calls_read: int
    agents: dict[str, dict[str, list[OutdatedMention]]]


@router.get("/v1/policy-currency", response_model=PolicyCurrency, tags=["agents"],
            responses={401: {"model": Error}, 403: {"model": Error}, 422: {"model": Error}})
def policy_currency(repo: RepoDep, key: ReadScoresKey, settings: SettingsDep,
                    date_from: Annotated[date | None, Query(alias="from")] = None,
                    date_to: Annotated[date | None, Query(alias="to")] = None,
                    agent_id: str | None = None) -> Any:
    """The refresher list: agents who stated outdated policy, per fact, with the calls. Mentions a
    reviewer dismissed are left out; items to check a reviewer confirmed are in."""
    check_range(date_from, date_to)
    calls_read, listing = reviewed_currency(store=repo, key=key, date_from=date_from, date_to=date_to,
                                            agent_id=agent_id, dual=settings.dual_review_kinds)
    with_external_ids(repo, listing)
    agents = {agent: {fact: [OutdatedMention(**m) for m in calls] for fact, calls in facts.items()}
              for agent, facts in listing.items()}
    return PolicyCurrency(calls_read=calls_read, agents=agents)
