"""The call page's review forms: a QA reviewer overrides a criterion or dismisses a violation.

The form posts with the session cookie and the session's form token; a post from another site
(its Origin or Sec-Fetch-Site says so, `Origin: null` included) or without the token is refused.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from qa_service.api.review import REVIEW, add_review
from qa_service.errors import InputError, NotFound

router = APIRouter(include_in_schema=False)


def may_review(role: str) -> bool:
    """Whether a signed-in role may review scorecards."""
    return role == "admin" or role in REVIEW


@router.post("/calls/{call_id}/reviews")
async def review_from_page(request: Request, call_id: str) -> Response:
    """Store a review sent from the call page and go back to the page."""
    from qa_service.web.pages import _render, _to_sign_in, form_refused, signed_in

    key = await run_in_threadpool(signed_in, request)
    if key is None:
        return _to_sign_in(request)
    form = await request.form()
    refused = form_refused(request, form, key)
    if refused is not None:
        return refused
    if not may_review(key.role):
        return _render(request, "message.html", {"key": key, "title": "Not allowed",
                                                 "message": "Only QA reviewers can review scorecards."}, 403)
    target, target_id = str(form.get("target") or ""), str(form.get("id") or "")
    action, reason = str(form.get("action") or ""), str(form.get("reason") or "")
    repo = request.app.state.repo
    try:
        await run_in_threadpool(add_review, repo, key, call_id, target, target_id, action, reason)
    except InputError as exc:
        return _render(request, "message.html", {"key": key, "title": "Review not saved",
                                                 "message": f"{exc}."}, 422)
    except NotFound as exc:
        return _render(request, "message.html", {"key": key, "title": "Review not saved",
                                                 "message": f"{exc}."}, 404)
    query = urlencode({"c": target_id} if target == "criterion" else {})
    anchor = {"criterion": "criteria", "to_check": "to-check", "verdict": "verdict"}.get(target, "violations")
    return RedirectResponse(f"/calls/{call_id}{'?' + query if query else ''}#{anchor}", status_code=303)


def page_review(repo: object, card: object) -> dict[str, object]:
    """What the call page shows of the reviews: reviewed verdicts by criterion, violation and item to
    check id, the verdict's review, and whether the verdict is still provisional."""
    from qa_service.api.review import reviewed_card

    section = reviewed_card(repo, card)["review"]  # type: ignore[arg-type]
    items = section["items"]
    return {
        "criteria": {i["id"]: i for i in items if i["target"] == "criterion"},
        "violations": {i["id"]: i for i in items if i["target"] == "violation"},
        "to_check": {i["id"]: i for i in items if i["target"] == "to_check"},
        "verdict": next((i for i in items if i["target"] == "verdict"), None),
        "reviewed": section["reviewed"], "score": section["reviewed_score"],
        "passed": section["reviewed_passed"], "auto_fail": section["reviewed_auto_fail"],
        "provisional": section["reviewed_provisional"],
    }
