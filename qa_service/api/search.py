"""Search route: calls by external id and by words of their redacted transcripts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from qa_service.api.deps import ReadScoresKey, RepoDep
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.services import search

router = APIRouter(tags=["calls"])


@router.get("/v1/search", dependencies=PAGED)
def search_calls(
    repo: RepoDep, key: ReadScoresKey,
    q: Annotated[str, Query(min_length=1, max_length=search.MAX_QUERY_CHARS,
                            description="An external call id, or words that all appear in a transcript")],
    cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    """The call with this external id (`by_external_id`, on the first page; null on the pages after it),
    and a page of the calls whose redacted transcript holds every word of `q` (`calls`, newest first by
    call date, time received and call id, each with the lines around the words); `next_cursor` reads the
    next page and `more` says there is one. A scoped key finds its teams' calls only."""
    found = search.search_calls(store=repo, key=key, query=q, cursor=cursor, page_size=page_size)
    exact = found.by_external_id
    return {
        "query": found.query,
        "by_external_id": {"call_id": exact.id, "external_id": exact.external_id, "agent_id": exact.agent_id,
                           "call_date": exact.call_date.isoformat(), "status": exact.status}
        if exact is not None else None,
        "count": len(found.hits), "more": found.more, "page_size": found.page_size,
        "next_cursor": found.next_cursor,
        "calls": [{"call_id": h.call_id, "external_id": h.external_id, "agent_id": h.agent_id,
                   "call_date": h.call_date.isoformat(), "snippet": search.plain(h.snippet)}
                  for h in found.hits],
    }
