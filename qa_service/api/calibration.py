"""Calibration sessions: open one over some calls and reviewers, answer each call blind, read the
agreement once every answer is in (or QA closes the session).

The use cases live in `services.calibration`; answers there never change a scorecard.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from qa_service.api.deps import CallIdPath, ReadScoresKey, RepoDep, ReviewKey
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.calibration import MAX_CALLS, MAX_NAME_CHARS, MAX_REVIEWERS
from qa_service.services import calibration
from qa_service.services.calls import with_external_ids

router = APIRouter(tags=["calibration"])

Answer = Annotated[str, Field(max_length=16)]
ItemId = Annotated[str, Field(min_length=1, max_length=100)]


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    calls: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=MAX_CALLS, description="Call ids; each is pinned to its latest scorecard")
    reviewers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=2, max_length=MAX_REVIEWERS, description="QA or admin keys, by key id or name")


class SheetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    criteria: dict[ItemId, Answer] = Field(description="Every criterion of the call: pass, fail or na")
    violations: dict[ItemId, Answer] = Field(default_factory=dict,
                                             description="Every violation of the call: confirm or dismiss")


@router.post("/v1/calibrations", status_code=201)
def create_session(body: SessionIn, repo: RepoDep, key: ReviewKey) -> dict[str, Any]:
    """Open a calibration session over these calls for these reviewers."""
    session = calibration.create_session(store=repo, key=key, name=body.name, calls=body.calls,
                                         reviewers=body.reviewers)
    return with_external_ids(repo, calibration.session_view(store=repo, key=key, session_id=session.id))


@router.get("/v1/calibrations", dependencies=PAGED)
def list_sessions(repo: RepoDep, key: ReadScoresKey, cursor: CursorQ = None,
                  page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
    """Calibration sessions, newest first, a page at a time, with each reviewer's progress (a scoped key:
    the sessions whose calls are all inside its scope)."""
    page = calibration.list_sessions(store=repo, key=key, cursor=cursor, page_size=page_size)
    return {"count": len(page.items), "sessions": with_external_ids(repo, page.items),
            "page_size": page.page_size, "next_cursor": page.next_cursor}


@router.get("/v1/calibrations/{session_id}")
def get_session(session_id: str, repo: RepoDep, key: ReadScoresKey) -> dict[str, Any]:
    """A session as the key sees it: before the reveal only its own answers, after it every answer, the
    machine's verdicts and the agreement per criterion and violation."""
    return with_external_ids(repo, calibration.session_view(store=repo, key=key, session_id=session_id))


@router.put("/v1/calibrations/{session_id}/calls/{call_id}/answers")
def put_answers(session_id: str, call_id: CallIdPath, body: SheetIn, repo: RepoDep,
                key: ReviewKey) -> dict[str, Any]:
    """Your answers for one call of the session (sent again before the reveal, they replace the earlier
    ones); the last reviewer's last call reveals the session."""
    sheet = calibration.submit_sheet(store=repo, key=key, session_id=session_id, call_id=call_id,
                                     criteria=body.criteria, violations=body.violations)
    session = repo.calibration.get_session(session_id)
    return {"answers": with_external_ids(repo, sheet), "status": session.status,
            "revealed": session.status == "closed"}


@router.post("/v1/calibrations/{session_id}/close")
def close_session(session_id: str, repo: RepoDep, key: ReviewKey) -> dict[str, Any]:
    """Close the session before every answer is in: the answers and figures are revealed as they stand."""
    calibration.close_session(store=repo, key=key, session_id=session_id)
    return with_external_ids(repo, calibration.session_view(store=repo, key=key, session_id=session_id))
