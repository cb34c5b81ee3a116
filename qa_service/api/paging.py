"""The query parameters of every paged listing: `cursor` and `page_size`, and a clear 422 for the page
numbers and limits that listings do not take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from qa_service.errors import InputError
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

CursorQ = Annotated[str | None, Query(max_length=400, description="The next_cursor of the page before; "
                                                                   "none for the first page")]
PageSizeQ = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page")]


def no_page_number(page: Annotated[str | None, Query(include_in_schema=False)] = None,
                   limit: Annotated[str | None, Query(include_in_schema=False)] = None) -> None:
    """Refuse `page=` and `limit=`: listings are read by cursor, and a page number silently read as the
    first page (or a limit as a page size) would hide that from a caller."""
    if page is not None:
        raise InputError("'page' is not a parameter: listings are read by cursor; pass the next_cursor of "
                         "the page before as cursor=")
    if limit is not None:
        raise InputError("'limit' is not a parameter: listings are read by cursor; page_size= sets the "
                         f"items per page (1-{MAX_PAGE_SIZE}) and next_cursor, passed back as cursor=, "
                         "reads the next page")


# Every paged listing refuses `page=` and `limit=` with those messages.
PAGED = [Depends(no_page_number)]

__all__ = ["DEFAULT_PAGE_SIZE", "PAGED", "CursorQ", "PageSizeQ"]
