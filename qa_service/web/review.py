"""The call page's review forms: a QA reviewer overrides a criterion or dismisses a violation.

The form posts with the session cookie and the session's form token; a post from another site
(its Origin or Sec-Fetch-Site says so, `Origin: null` included) or without the token is refused.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from qa_service.errors import InputError, NotFound
from qa_service.services.reviews import add_review, may_review
from qa_service.web.pages import render, signed_form

router = APIRouter(include_in_schema=False)


@router.post("/calls/{call_id}/reviews")
async def review_from_page(request: Request, call_id: str) -> Response:
    """Store a review sent from the call page and go back to the page."""
    posted = await signed_form(request)
    if isinstance(posted, Response):
        return posted
    key, form = posted.key, posted.form
    if not may_review(key.role):
        return render(request, "message.html", {"key": key, "title": "Not allowed",
                                                "message": "Only QA reviewers can review scorecards."}, 403)
    target, target_id = str(form.get("target") or ""), str(form.get("id") or "")
    action, reason = str(form.get("action") or ""), str(form.get("reason") or "")
    try:
        await run_in_threadpool(lambda: add_review(store=request.app.state.repo, key=key, call_id=call_id,
                                                   target=target, target_id=target_id, action=action,
                                                   reason=reason,
                                                   dual=request.app.state.settings.dual_review_kinds))
    except InputError as exc:
        return render(request, "message.html", {"key": key, "title": "Review not saved",
                                                "message": f"{exc}."}, 422)
    except NotFound as exc:
        return render(request, "message.html", {"key": key, "title": "Review not saved",
                                                "message": f"{exc}."}, 404)
    query = urlencode({"c": target_id} if target == "criterion" else {})
    anchor = {"criterion": "criteria", "to_check": "to-check", "verdict": "verdict"}.get(target, "violations")
    return RedirectResponse(f"/calls/{call_id}{'?' + query if query else ''}#{anchor}", status_code=303)
