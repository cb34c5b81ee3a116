"""The audit log, read a page at a time (admin keys only: the route's dependency checks the role).

Newest first by (time, id): rows are only ever appended, so a page read later still starts right after
the last row shown and repeats or skips nothing.
"""

from __future__ import annotations

from datetime import datetime

from qa_service.storage import listings, paging
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, Paged
from qa_service.storage.repository import Repository
from qa_service.storage.review import AuditEntry


def audit_page(*, store: Repository, target_id: str | None = None, key_id: str | None = None,
               action: str | None = None, since: datetime | None = None, until: datetime | None = None,
               cursor: str | None = None, page_size: int = DEFAULT_PAGE_SIZE) -> Paged[AuditEntry]:
    """One page of audit rows (by target, key, action and time range), newest first, after the row the
    cursor names; InputError for a cursor this listing did not give."""
    page_size = paging.page_size_within(page_size)
    after = listings.AUDIT.decode(cursor) if cursor is not None else None
    rows = store.audit.entries(target_id=target_id, key_id=key_id, action=action, since=since, until=until,
                               after=after, limit=page_size + 1)
    return listings.AUDIT.page(rows, page_size)
