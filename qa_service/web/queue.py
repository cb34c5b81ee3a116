"""The review queue page: the calls waiting for a QA reviewer, oldest first, each with why it waits.

The queue is `services.reviews.review_queue`, the same one the API lists as JSON, a page at a time with
a link to the next; the page names each call by its external id (linked to the call's page) and filters
by why, agent, team, vendor and date.
A scoped key sees its teams' calls only (the service narrows them); an agent's key is refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from qa_service.access.keys import READ_SCORES
from qa_service.services import teams
from qa_service.services.reviews import QUEUE, review_queue
from qa_service.storage.repository import Scope, StoredKey
from qa_service.storage.views import Filters
from qa_service.web.pages import _filters, page_cursor, pager_links, render, signed_page, staff_only

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100  # calls on a page
# Why a call waits, in the queue's order of precedence, as a reviewer reads it.
WHY = {
    "dispute": "The agent disputes part of the scorecard",
    "second_review": "A reviewer's verdict waits for a second reviewer",
    "provisional": "Provisional verdict: its deciding evidence is weak",
    "outdated_policy": "Quotes outdated policy",
    "auto_fail": "An auto-fail item fired",
    "to_check": "Items to listen to (near misses, unsure figures)",
    "finding": "A finding (e.g. a lapsed certification)",
    "sampled": "The agent's weekly sample",
}


def queue_refused(request: Request, key: StoredKey) -> Response | None:
    """A 403 page for keys that do not read other agents' scorecards (the queue is QA's and supervisors')."""
    refused = staff_only(request, key)
    if refused is not None or key.role == "admin" or key.role in READ_SCORES:
        return refused
    return render(request, "message.html", {
        "key": key, "title": "Not for this key",
        "message": "The review queue is for QA reviewers and supervisors."}, 403)


@router.get("/review-queue", response_class=HTMLResponse)
def review_queue_page(request: Request) -> Response:
    """Calls waiting for review, oldest first, with why, filtered by why, agent, team, vendor and date."""
    key = signed_page(request, queue_refused)
    if isinstance(key, Response):
        return key
    errors: list[str] = []
    f = _filters(request, errors)
    why = request.query_params.get("why") or None
    if why is not None and why not in WHY:
        errors.append("unknown reason: pick one from the list")
        why = None
    repo = request.app.state.repo
    # Team and vendor narrow the queue as a scope would: by the agent's membership on the call's date.
    group = Scope(teams=(f.team,) if f.team else (), vendors=(f.vendor,) if f.vendor else ()) \
        if f.team or f.vendor else None
    # A cursor the queue did not give is reported, and the first page shown (the filters leave out a
    # 'from' after 'to' the same way).
    cursor = page_cursor(request, errors, QUEUE.decode)
    page = review_queue(store=repo, key=key, share=request.app.state.settings.review_share,
                        agent_id=f.agent_id, date_from=f.date_from, date_to=f.date_to, why=why, group=group,
                        cursor=cursor, page_size=PAGE_SIZE)
    items = page.items
    external = repo.search.external_ids([i["call_id"] for i in items]) if items else {}
    views = repo.views
    names = group_names(repo, key)
    return render(request, "review_queue.html", {
        "key": key, "errors": errors, "f": f, "why": why, "reasons": WHY, "calls": items,
        "pager": pager_links(request, page, cursor), "external": external,
        "agents": views.agent_ids(teams.scoped(key, Filters())), "teams": names[0], "vendors": names[1],
    })


def group_names(repo: Any, key: StoredKey) -> tuple[list[str], list[str]]:
    """The teams and vendors a filter may offer the key: its scope's own when it has one (a scoped key
    learns no other team's name), every one otherwise."""
    if key.scope is not None:
        return list(key.scope.teams), list(key.scope.vendors)
    names: tuple[list[str], list[str]] = repo.teams.teams_and_vendors()
    return names
