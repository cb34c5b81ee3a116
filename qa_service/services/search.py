"""Finding calls: by their external id (exactly) and by words of their redacted transcripts.

The words are looked up in the database's own full-text index (`storage.search`: SQLite FTS5,
PostgreSQL `tsvector`), which holds only the redacted text of each call's latest scorecard. Hits come a
page at a time, newest first (call date, time received, call id), by cursor. A scoped key finds its
teams' calls only: the index is read in batches after the cursor and each hit checked against the
key's reach, so a page of results is full whenever enough of the key's own calls match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from qa_service.errors import InputError
from qa_service.services.calls import may_read
from qa_service.services.teams import reach
from qa_service.storage import paging
from qa_service.storage.paging import DEFAULT_PAGE_SIZE
from qa_service.storage.repository import Repository, StoredCall, StoredKey
from qa_service.storage.search import MARK_END, MARK_START, Hit, words

MAX_QUERY_CHARS = 200
# Hits read at a time for a scoped key, whose pages leave out the other teams' calls.
BATCH = 200
# Hits, newest first: by call date, time received and call id.
SEARCH: paging.Listing[Hit] = paging.Listing("search", (date, datetime, str), lambda hit: hit.key,
                                             uuid_id=True)


@dataclass(frozen=True)
class Found:
    """What a search found: the call with this external id (if the key reads it; on the first page only),
    and a page of the calls whose transcript holds every word, newest first, with the cursor of the next
    page (None: the last)."""

    query: str
    by_external_id: StoredCall | None
    hits: list[Hit] = field(default_factory=list)
    page_size: int = DEFAULT_PAGE_SIZE
    next_cursor: str | None = None

    @property
    def more(self) -> bool:
        """Whether more calls match than this page shows."""
        return self.next_cursor is not None


def check_query(query: str) -> str:
    """The query, trimmed; InputError when it is empty or too long."""
    query = query.strip()
    if not query:
        raise InputError("type an external call id or some words of a transcript")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"a search is at most {MAX_QUERY_CHARS} characters")
    return query


def search_calls(*, store: Repository, key: StoredKey, query: str, cursor: str | None = None,
                 page_size: int = DEFAULT_PAGE_SIZE) -> Found:
    """The call whose external id is `query` (on the first page, without a cursor), and a page of the
    calls whose redacted transcript holds every word of it, among the calls the key may read, after the
    call the cursor names. InputError for a cursor the search did not give."""
    query = check_query(query)
    page_size = paging.page_size_within(page_size)
    after = SEARCH.after(cursor)
    exact = None
    if cursor is None:
        exact = store.find_call(query)
        if exact is not None and not may_read(key, exact, store=store):
            exact = None  # another team's call: as if there were none
    inside = reach(store, key)
    # Every hit passes for a key without a scope: one read of a page and one more says it all.
    size = page_size + 1 if inside.scope is None else max(page_size + 1, BATCH)
    hits: list[Hit] = []
    while words(query) and len(hits) <= page_size:
        batch = store.search.find(query, after=after, limit=size)
        hits += [hit for hit in batch if inside.call(hit.agent_id, hit.call_date)]
        if len(batch) < size:
            break
        after = batch[-1].key
    shown = SEARCH.page(hits, page_size)
    return Found(query, exact, shown.items, page_size, shown.next_cursor)


def plain(snippet: str) -> str:
    """A snippet without its highlight marks."""
    return snippet.replace(MARK_START, "").replace(MARK_END, "")
