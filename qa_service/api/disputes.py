"""Agents' routes and their disputes: acknowledge a scorecard, dispute a criterion or violation, QA
resolves it; overturn rates per rule.

The use cases live in `services.disputes`; an agent's key reaches only its own calls through the same
scope every reading route applies (`services.teams`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from qa_service.api.agents import DateFrom, DateTo, OverturnOut, RubricQ, TeamQ, VendorQ, check_range
from qa_service.api.deps import (
    CallIdPath,
    RaiseDisputeKey,
    ReadOwnScoresKey,
    ReadScoresKey,
    RepoDep,
    ResolveDisputeKey,
    SettingsDep,
)
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.api.schemas import Error
from qa_service.review import MAX_REASON_CHARS
from qa_service.services import disputes
from qa_service.services.calls import readable_call, with_external_ids
from qa_service.storage.views import Filters

router = APIRouter(tags=["disputes"])
# A dispute's id is a database integer: a larger number is no dispute (422), not an overflow (500).
DisputeId = Annotated[int, Path(ge=1, le=2**63 - 1)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No or bad API key"},
    403: {"model": Error, "description": "The key's role may not do this"},
    404: {"model": Error, "description": "No such call or dispute (or not one the key may read)"},
}


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["criterion", "violation"]
    id: str = Field(min_length=1, max_length=100, description="Id of the criterion or violation disputed")
    reason: str = Field(max_length=MAX_REASON_CHARS, description="Why the agent disagrees; required")


class ResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["upheld", "overturned"] = Field(
        description="upheld: the verdict stands; overturned: the criterion passes / the violation is "
                    "dismissed, as a review of it, and the reviewed score and aggregates change")
    reason: str = Field(max_length=MAX_REASON_CHARS, description="Why; required, shown to the agent")


@router.post("/v1/calls/{call_id}/acknowledgement", status_code=201,
             responses={**_ERRORS, 200: {"description": "Acknowledged before: the first acknowledgement"},
                        409: {"model": Error, "description": "The call is not scored"}})
def post_acknowledgement(call_id: CallIdPath, repo: RepoDep, key: RaiseDisputeKey,
                         response: Response) -> dict[str, Any]:
    """The agent acknowledges the call's latest scorecard (agent keys, own calls); recorded with the time."""
    ack, created = disputes.acknowledge(store=repo, key=key, call_id=call_id)
    if not created:
        response.status_code = 200
    return with_external_ids(repo, ack.to_dict())


@router.post("/v1/calls/{call_id}/disputes", status_code=201,
             responses={**_ERRORS, 409: {"model": Error, "description": "The dispute window has closed, the "
                                         "target has an open dispute, or it already stands for the agent"},
                        422: {"model": Error, "description": "No reason, or not a criterion or violation"}})
def post_dispute(call_id: CallIdPath, body: DisputeIn, request: Request, repo: RepoDep,
                 key: RaiseDisputeKey) -> dict[str, Any]:
    """The agent disputes a failed criterion or a violation of the call's latest scorecard, with a reason,
    within QA_DISPUTE_WINDOW_DAYS of the scorecard being stored; one open dispute per target."""
    dispute = disputes.raise_dispute(store=repo, key=key, call_id=call_id, target=body.target,
                                     target_id=body.id, reason=body.reason,
                                     window_days=request.app.state.settings.dispute_window_days)
    return with_external_ids(repo, dispute.to_dict())


@router.get("/v1/calls/{call_id}/disputes", responses=_ERRORS)
def get_call_disputes(call_id: CallIdPath, repo: RepoDep, key: ReadOwnScoresKey) -> dict[str, Any]:
    """The call's acknowledgements and disputes with their resolutions (who, when, why), oldest first."""
    call = readable_call(repo, key, call_id)
    acks, rows = disputes.call_disputes(store=repo, key=key, call_id=call.id)
    return with_external_ids(repo, {"call_id": call.id, "external_id": call.external_id,
                                    "acknowledgements": [a.to_dict() for a in acks],
                                    "disputes": [d.to_dict() for d in rows]})


@router.post("/v1/disputes/{dispute_id}/resolution",
             responses={**_ERRORS, 409: {"model": Error, "description": "Resolved already, or the target is "
                                         "gone from the latest scorecard"}})
def post_resolution(dispute_id: DisputeId, body: ResolutionIn, repo: RepoDep, settings: SettingsDep,
                    key: ResolveDisputeKey) -> dict[str, Any]:
    """QA resolves an open dispute: upheld, or overturned (a review of the target: the reviewed score,
    verdict and aggregates change). The dispute and its resolution are kept."""
    dispute, card = disputes.resolve_dispute(store=repo, key=key, dispute_id=dispute_id, outcome=body.outcome,
                                             reason=body.reason, dual=settings.dual_review_kinds)
    result = {k: v for k, v in card["review"].items() if k != "items"} if card is not None else None
    return {"dispute": with_external_ids(repo, dispute.to_dict()), "result": result}


@router.get("/v1/disputes", responses=_ERRORS, dependencies=PAGED)
def list_disputes(repo: RepoDep, key: ReadOwnScoresKey,
                  status: Annotated[Literal["open", "upheld", "overturned"] | None, Query()] = None,
                  agent_id: Annotated[str | None, Query(max_length=100)] = None,
                  cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
    """Disputes, oldest first (open ones wait for QA), a page at a time; an agent's key lists its own."""
    page = disputes.list_disputes(store=repo, key=key, status=status, agent_id=agent_id, cursor=cursor,
                                  page_size=page_size)
    return {"count": len(page.items), "disputes": with_external_ids(repo, [d.to_dict() for d in page.items]),
            "page_size": page.page_size, "next_cursor": page.next_cursor}


@router.get("/v1/overturn-rates", responses=_ERRORS)
def overturn_rates(repo: RepoDep, key: ReadScoresKey, date_from: DateFrom = None, date_to: DateTo = None,
                   agent_id: Annotated[str | None, Query(max_length=100)] = None, rubric_id: RubricQ = None,
                   team: TeamQ = None, vendor: VendorQ = None) -> dict[str, Any]:
    """Per rubric and criterion or violation id: agents' disputes, how many QA overturned or upheld, and
    the overturn rate (a rule often overturned is a bad rule), most often overturned first."""
    check_range(date_from, date_to)
    rates = disputes.overturn_rates(store=repo, key=key, f=Filters(
        agent_id=agent_id, date_from=date_from, date_to=date_to, rubric_id=rubric_id, team=team,
        vendor=vendor))
    return {"from": _iso(date_from), "to": _iso(date_to), "agent_id": agent_id, "rubric_id": rubric_id,
            "team": team, "vendor": vendor, "rules": [OverturnOut.of(r).model_dump() for r in rates]}


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
