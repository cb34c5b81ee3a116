"""Walking a paged listing to its end, page after page, for the tests of each listing: through a service
(a `Paged` per page) or through a route (a JSON object per page)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from qa_service.storage.paging import Paged

T = TypeVar("T")


def walk(read: Callable[[str | None], Paged[T]], page_size: int = 2) -> list[T]:
    """Every item of a listing, page after page; each page but the last holds page_size items."""
    seen: list[T] = []
    cursor = None
    while True:
        found = read(cursor)
        assert found.page_size == page_size
        seen += found.items
        if found.next_cursor is None:
            assert len(found.items) <= page_size
            return seen
        assert len(found.items) == page_size  # a scope or filter never leaves a page short
        cursor = found.next_cursor


def walk_api(client: TestClient, path: str, field: str, page_size: int = 2,
             headers: dict[str, str] | None = None, **params: Any) -> list[Any]:
    """Every item a route lists, page after page with page_size, each page but the last full."""
    seen: list[Any] = []
    cursor = None
    while True:
        at = {"cursor": cursor} if cursor else {}
        r = client.get(path, params={**params, "page_size": page_size, **at}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["page_size"] == page_size
        seen += body[field]
        cursor = body["next_cursor"]
        if cursor is None:
            assert len(body[field]) <= page_size
            return seen
        assert len(body[field]) == page_size
