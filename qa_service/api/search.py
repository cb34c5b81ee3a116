"""Search route: calls by external id and by words of their redacted transcripts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from qa_service.api.deps import ReadScoresKey, RepoDep
from qa_service.services import search

router = APIRouter(tags=["calls"])


@router.get("/v1/search")
def search_calls(
    repo: RepoDep, key: ReadScoresKey,
    q: Annotated[str, Query(min_length=1, max_length=search.MAX_QUERY_CHARS,
                            description="An external call id, or words that all appear in a transcript")],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The call with this external id (`by_external_id`), and the calls whose redacted transcript holds
    every word of `q` (`calls`, newest first, each with the lines around the words). A scoped key finds
    its teams' calls only."""
    found = search.search_calls(store=repo, key=key, query=q, limit=limit)
    exact = found.by_external_id
    return {
        "query": found.query,
        "by_external_id": {"call_id": exact.id, "external_id": exact.external_id, "agent_id": exact.agent_id,
                           "call_date": exact.call_date.isoformat(), "status": exact.status}
        if exact is not None else None,
        "count": len(found.hits), "more": found.more,
        "calls": [{"call_id": h.call_id, "external_id": h.external_id, "agent_id": h.agent_id,
                   "call_date": h.call_date.isoformat(), "snippet": search.plain(h.snippet)}
                  for h in found.hits],
    }
