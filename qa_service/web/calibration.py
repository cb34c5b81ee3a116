"""Calibration pages: the sessions, one session's progress or results, and a reviewer's scoring form.

The form posts with the session cookie and the session's form token, like the call page's review
forms. The use cases (who sees what, and when) are `services.calibration`'s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from qa_service.errors import Conflict, Forbidden, InputError, NotFound
from qa_service.services import calibration
from qa_service.services.reviews import may_review
from qa_service.storage import listings
from qa_service.storage.repository import StoredKey
from qa_service.web.pages import (
    PAGE_SIZE,
    page_cursor,
    pager_links,
    render,
    signed_form,
    signed_in,
    to_sign_in,
)

router = APIRouter(include_in_schema=False)


def _message(request: Request, key: StoredKey, title: str, message: str, status: int) -> Response:
    return render(request, "message.html", {"key": key, "title": title, "message": message}, status)


def _session(request: Request, key: StoredKey, session_id: str, **kw: Any) -> dict[str, Any] | Response:
    try:
        return calibration.session_view(store=request.app.state.repo, key=key, session_id=session_id, **kw)
    except NotFound:
        return _message(request, key, "No such session", "There is no calibration session with this id.", 404)
    except Forbidden as exc:
        return _message(request, key, "Not for this key", f"{exc}.", 403)


@router.get("/calibrations", response_class=HTMLResponse)
def calibrations_page(request: Request) -> Response:
    """Calibration sessions, newest first, with each reviewer's progress."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    errors: list[str] = []
    cursor = page_cursor(request, errors, listings.CALIBRATIONS.decode)
    sessions = calibration.list_sessions(store=request.app.state.repo, key=key, cursor=cursor,
                                         page_size=PAGE_SIZE)
    return render(request, "calibrations.html", {"key": key, "errors": errors, "sessions": sessions.items,
                                                 "pager": pager_links(request, sessions, cursor)})


@router.get("/calibrations/{session_id}", response_class=HTMLResponse)
def calibration_page(request: Request, session_id: str) -> Response:
    """A session: before the reveal its progress and the reader's own calls to score; after it the
    agreement per criterion and violation, and each reviewer against the machine."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    view = _session(request, key, session_id)
    if isinstance(view, Response):
        return view
    return render(request, "calibration.html", {"key": key, "s": view, "can_review": may_review(key.role)})


@router.get("/calibrations/{session_id}/calls/{call_id}", response_class=HTMLResponse)
def scoring_page(request: Request, session_id: str, call_id: str) -> Response:
    """The scoring form of one call: the redacted transcript, each criterion and violation to answer,
    the reader's earlier answers filled in; none of the machine's verdicts on criteria."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    view = _session(request, key, session_id, with_transcripts=True)
    if isinstance(view, Response):
        return view
    entry = next((c for c in view["calls_detail"] if c["call_id"] == call_id), None)
    if entry is None:
        return _message(request, key, "No such call", "This calibration session has no such call.", 404)
    if not view["you_review"]:
        return _message(request, key, "Not a reviewer", "You are not a reviewer of this session.", 403)
    return render(request, "calibration_call.html", {"key": key, "s": view, "c": entry})


@router.post("/calibrations/{session_id}/calls/{call_id}")
async def scoring_post(request: Request, session_id: str, call_id: str) -> Response:
    """Store the reviewer's answers sent from the scoring form and go back to the session."""
    posted = await signed_form(request)
    if isinstance(posted, Response):
        return posted
    key, form = posted.key, posted.form
    criteria = {str(k)[2:]: str(v) for k, v in form.multi_items() if str(k).startswith("c:")}
    violations = {str(k)[2:]: str(v) for k, v in form.multi_items() if str(k).startswith("v:")}
    try:
        await run_in_threadpool(lambda: calibration.submit_sheet(
            store=request.app.state.repo, key=key, session_id=session_id, call_id=call_id, criteria=criteria,
            violations=violations))
    except InputError as exc:
        return _message(request, key, "Answers not saved", f"{exc}.", 422)
    except Forbidden as exc:
        return _message(request, key, "Answers not saved", f"{exc}.", 403)
    except NotFound as exc:
        return _message(request, key, "Answers not saved", f"{exc}.", 404)
    except Conflict as exc:
        return _message(request, key, "Answers not saved", f"{exc}.", 409)
    return RedirectResponse(f"/calibrations/{session_id}", status_code=303)
