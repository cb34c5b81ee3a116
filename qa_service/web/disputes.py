"""The pages' dispute forms and the disputes page.

An agent signed in with an agent's key acknowledges a scorecard and disputes a criterion or violation
from the call page; a QA reviewer upholds or overturns the dispute there. The disputes page lists the
open disputes and the overturn rate per rule for QA staff and supervisors. Every form posts with the
session cookie and the session's form token, as the review forms do.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from qa_service.errors import AuthError, Conflict, InputError, NotFound
from qa_service.services import disputes as service
from qa_service.services.calls import with_external_ids
from qa_service.storage import listings
from qa_service.storage.views import Filters
from qa_service.web.pages import (
    PAGE_SIZE,
    _filters,
    page_cursor,
    pager_links,
    render,
    signed_form,
    signed_page,
    staff_only,
)

router = APIRouter(include_in_schema=False)


def _failed(request: Request, key: object, title: str, exc: Exception) -> Response:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else \
        403 if isinstance(exc, AuthError) else 422
    return render(request, "message.html", {"key": key, "title": title, "message": f"{exc}."}, status)


@router.post("/calls/{call_id}/acknowledgement")
async def acknowledge_from_page(request: Request, call_id: str) -> Response:
    """The agent acknowledges the scorecard shown on the call page."""
    posted = await signed_form(request)
    if isinstance(posted, Response):
        return posted
    key = posted.key
    try:
        await run_in_threadpool(lambda: service.acknowledge(store=request.app.state.repo, key=key,
                                                            call_id=call_id))
    except (InputError, NotFound, Conflict, AuthError) as exc:
        return _failed(request, key, "Not acknowledged", exc)
    return RedirectResponse(f"/calls/{call_id}#acknowledgement", status_code=303)


@router.post("/calls/{call_id}/disputes")
async def dispute_from_page(request: Request, call_id: str) -> Response:
    """The agent disputes a criterion or violation from the call page."""
    posted = await signed_form(request)
    if isinstance(posted, Response):
        return posted
    key, form = posted.key, posted.form
    # The page's form names the target as one choice, "kind:id"; a form may also send them apart.
    pick = str(form.get("pick") or "")
    target, _, target_id = pick.partition(":")
    if not pick:
        target, target_id = str(form.get("target") or ""), str(form.get("id") or "")
    reason = str(form.get("reason") or "")
    window = request.app.state.settings.dispute_window_days
    try:
        await run_in_threadpool(lambda: service.raise_dispute(
            store=request.app.state.repo, key=key, call_id=call_id, target=target, target_id=target_id,
            reason=reason, window_days=window))
    except (InputError, NotFound, Conflict, AuthError) as exc:
        return _failed(request, key, "Dispute not sent", exc)
    return RedirectResponse(f"/calls/{call_id}#disputes", status_code=303)


@router.post("/disputes/{dispute_id}/resolution")
async def resolve_from_page(request: Request, dispute_id: int) -> Response:
    """A QA reviewer upholds or overturns a dispute from the call page."""
    posted = await signed_form(request)
    if isinstance(posted, Response):
        return posted
    key, form = posted.key, posted.form
    outcome, reason = str(form.get("outcome") or ""), str(form.get("reason") or "")
    try:
        dispute, _ = await run_in_threadpool(lambda: service.resolve_dispute(
            store=request.app.state.repo, key=key, dispute_id=dispute_id, outcome=outcome, reason=reason,
            dual=request.app.state.settings.dual_review_kinds))
    except (InputError, NotFound, Conflict, AuthError) as exc:
        return _failed(request, key, "Dispute not resolved", exc)
    return RedirectResponse(f"/calls/{dispute.call_id}#disputes", status_code=303)


@router.get("/disputes")
def disputes_page(request: Request) -> Response:
    """Open disputes, oldest first, and how often each rule's disputes are overturned."""
    key = signed_page(request, staff_only)
    if isinstance(key, Response):
        return key
    errors: list[str] = []
    f = _filters(request, errors, agent=False)
    f = Filters(date_from=f.date_from, date_to=f.date_to, rubric_id=f.rubric_id, team=f.team, vendor=f.vendor)
    repo = request.app.state.repo
    cursor = page_cursor(request, errors, listings.DISPUTES.decode)
    waiting = service.list_disputes(store=repo, key=key, status="open", cursor=cursor, page_size=PAGE_SIZE)
    # Staff know a call by the id its sender gave: the listing names each call by it.
    named = with_external_ids(repo, [{"call_id": d.call_id} for d in waiting.items])
    return render(request, "disputes.html", {
        "key": key, "errors": errors, "f": f, "open": waiting.items,
        "external_ids": {row["call_id"]: row["external_id"] for row in named},
        "pager": pager_links(request, waiting, cursor),
        "rates": service.overturn_rates(store=repo, key=key, f=f),
    })
