"""The search page: a call by its external id, or the calls whose redacted transcript holds some words.

The same use case as `GET /v1/search` (`services.search`), a page at a time with a link to the next; a
scoped key finds its teams' calls only.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape

from qa_service.errors import InputError
from qa_service.services import search
from qa_service.storage.paging import Paged
from qa_service.storage.search import MARK_END, MARK_START
from qa_service.web.pages import page_cursor, pager_links, render, signed_page, templates
from qa_service.web.queue import queue_refused

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50  # calls found on a page


def marked(snippet: str) -> Markup:
    """A snippet as HTML: its text escaped, the words found in <mark>."""
    html = str(escape(snippet)).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")
    return Markup(html)  # noqa: S704 - escaped above; only the marks become tags


templates.env.filters["marked"] = marked


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request) -> Response:
    """The search form and, with `q`, the call with that external id and the calls whose transcript
    holds every word of it (`go=1` goes straight to the call an external id names)."""
    key = signed_page(request, queue_refused)
    if isinstance(key, Response):
        return key
    query = request.query_params.get("q") or ""
    errors: list[str] = []
    # A cursor the search did not give is reported, and the first page shown.
    cursor = page_cursor(request, errors, search.SEARCH.decode)
    found = None
    if query.strip():
        try:
            found = search.search_calls(store=request.app.state.repo, key=key, query=query, cursor=cursor,
                                         page_size=PAGE_SIZE)
        except InputError as exc:
            errors.append(f"{exc}.")
    if found is not None and found.by_external_id is not None and request.query_params.get("go") == "1":
        return RedirectResponse(f"/calls/{found.by_external_id.id}", status_code=303)
    pager = None
    if found is not None:
        pager = pager_links(request, Paged(found.hits, found.page_size, found.next_cursor), cursor)
    return render(request, "search.html", {"key": key, "errors": errors, "q": query, "found": found,
                                           "cursor": cursor, "pager": pager})
