"""Human review routes: review a scorecard with a reason, read it reviewed, the review queue, the audit log.

The use cases live in `services.reviews`; the audit trail that records these reads is
`access.audit`, installed by the app factory.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from qa_service.api.deps import (
    AdminKey,
    CallIdPath,
    ReadOwnScoresKey,
    ReadScoresKey,
    RepoDep,
    ReviewKey,
    SettingsDep,
)
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.review import MAX_REASON_CHARS
from qa_service.scorecard import ReviewedScorecardDoc
from qa_service.services import audit, reviews
from qa_service.services.calls import readable_call, with_external_ids

router = APIRouter(tags=["review"])


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["criterion", "violation", "to_check", "verdict"]
    id: str = Field(min_length=1, max_length=100,
                    description='Id of the criterion, violation or item to check; "verdict" for the verdict')
    action: Literal["override_pass", "override_fail", "dismiss", "confirm", "restore"] = Field(
        description="criterion: override_pass, override_fail, restore; violation: confirm (it was said), "
                    "dismiss (it gives back what it cost: points or auto-fail), restore; "
                    "to_check: confirm (it counts as a violation), dismiss, restore; "
                    "verdict: confirm (a provisional verdict becomes final), restore")
    reason: str = Field(max_length=MAX_REASON_CHARS, description="Why; required")


@router.post("/v1/calls/{call_id}/reviews", status_code=201)
def post_review(call_id: CallIdPath, body: ReviewIn, repo: RepoDep, key: ReviewKey,
                settings: SettingsDep) -> dict[str, Any]:
    """Override a criterion, confirm or dismiss a violation or an item to check, or confirm a provisional
    verdict of the call's latest scorecard, with a reason. Under dual review (QA_DUAL_REVIEW) the result
    counts only what two reviewers agreed on; `result.dual_review` names what awaits another reviewer."""
    review, card = reviews.add_review(store=repo, key=key, call_id=call_id, target=body.target,
                                      target_id=body.id, action=body.action, reason=body.reason,
                                      dual=settings.dual_review_kinds)
    return {"review": with_external_ids(repo, review.to_dict()),
            "result": {k: v for k, v in card["review"].items() if k != "items"}}


@router.get("/v1/calls/{call_id}/reviews")
def get_reviews(call_id: CallIdPath, repo: RepoDep, key: ReadOwnScoresKey) -> list[dict[str, Any]]:
    """Every review of the call, oldest first."""
    return with_external_ids(repo, [r.to_dict() for r in reviews.call_reviews(store=repo, key=key,
                                                                                call_id=call_id)])


@router.get("/v1/calls/{call_id}/scorecard/reviewed",
            responses={200: {"description": "Scorecard format v1 with its review",
                             "model": ReviewedScorecardDoc}})
def get_reviewed_scorecard(call_id: CallIdPath, repo: RepoDep, key: ReadOwnScoresKey,
                           settings: SettingsDep) -> dict[str, Any]:
    """The latest scorecard with its `review` section: automatic and reviewed verdicts, who, when, why
    (and, under dual review, what awaits a second reviewer)."""
    call = readable_call(repo, key, call_id)
    return reviews.reviewed_card(store=repo, stored=repo.get_scorecard(call.id),
                                 dual=settings.dual_review_kinds)


@router.get("/v1/review-queue", dependencies=PAGED)
def review_queue(
    request: Request, repo: RepoDep, key: ReadScoresKey,
    agent_id: str | None = None,
    date_from: Annotated[date | None, Query(alias="from", description="First call date, inclusive")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last call date, inclusive")] = None,
    cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    """Calls marked for review and not reviewed yet, oldest first (call date, time received, call id), a
    page at a time: every provisional verdict, every call with an outdated-policy mention (whatever its
    pack says it costs), every auto-fail, every call with items to check (phrases and figures nearly
    heard), plus each agent's weekly sample. `why` says which; `next_cursor` reads the next page."""
    share = request.app.state.settings.review_share
    page = reviews.review_queue(store=repo, key=key, share=share, agent_id=agent_id, date_from=date_from,
                                date_to=date_to, cursor=cursor, page_size=page_size)
    return {"share": share, "count": len(page.items), "calls": with_external_ids(repo, page.items),
            "page_size": page.page_size, "next_cursor": page.next_cursor}


@router.get("/v1/audit", dependencies=PAGED)
def get_audit(
    repo: RepoDep, _key: AdminKey,
    call_id: Annotated[str | None, Query(description="A call, agent, key or rules id")] = None,
    key_id: str | None = None,
    action: Annotated[str | None, Query(description="e.g. read_scorecard, export_calls, auth_failed")] = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    """Audit rows, newest first, a page at a time, by target (call, agent, key or rules id), key, action
    and time range (admin only)."""
    since, until = (_aware(x) for x in (since, until))
    page = audit.audit_page(store=repo, target_id=call_id, key_id=key_id, action=action, since=since,
                            until=until, cursor=cursor, page_size=page_size)
    return {"entries": [r.to_dict() for r in page.items], "page_size": page.page_size,
            "next_cursor": page.next_cursor}


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
