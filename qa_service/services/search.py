"""Finding calls: by their external id (exactly) and by words of their redacted transcripts.

The words are looked up in the database's own full-text index (`storage.search`: SQLite FTS5,
PostgreSQL `tsvector`), which holds only the redacted text of each call's latest scorecard. A scoped
key finds its teams' calls only: the index is read in batches and each hit checked against the
key's reach, so a page of results is full whenever enough of the key's own calls match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qa_service.errors import InputError
from qa_service.services.calls import may_read
from qa_service.services.teams import reach
from qa_service.storage.repository import Repository, StoredCall, StoredKey
from qa_service.storage.search import MARK_END, MARK_START, Hit, words

MAX_QUERY_CHARS = 200
BATCH = 200


@dataclass(frozen=True)
class Found:
    """What a search found: the call with this external id (if the key reads it), and the calls whose
    transcript holds every word, newest first; `more` when there were more than the limit."""

    query: str
    by_external_id: StoredCall | None
    hits: list[Hit] = field(default_factory=list)
    more: bool = False


def check_query(query: str) -> str:
    """The query, trimmed; InputError when it is empty or too long."""
    query = query.strip()
    if not query:
        raise InputError("type an external call id or some words of a transcript")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"a search is at most {MAX_QUERY_CHARS} characters")
    return query


def search_calls(*, store: Repository, key: StoredKey, query: str, limit: int = 50) -> Found:
    """The call whose external id is `query`, and up to `limit` calls whose redacted transcript holds
    every word of it, among the calls the key may read."""
    query = check_query(query)
    exact = store.find_call(query)
    if exact is not None and not may_read(key, exact, store=store):
        exact = None  # another team's call: as if there were none
    inside = reach(store, key)
    hits: list[Hit] = []
    offset = 0
    if words(query):
        while True:
            batch = store.search.find(query, offset=offset, limit=BATCH)
            for hit in batch:
                if inside.call(hit.agent_id, hit.call_date):
                    if len(hits) == limit:
                        return Found(query, exact, hits, more=True)
                    hits.append(hit)
            if len(batch) < BATCH:
                break
            offset += BATCH
    return Found(query, exact, hits)


def plain(snippet: str) -> str:
    """A snippet without its highlight marks."""
    return snippet.replace(MARK_START, "").replace(MARK_END, "")
