"""Keyset pages (storage/paging.py): cursors name their listing and round-trip their key; a page
read one row long says whether another follows."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from qa_service.errors import InputError
from qa_service.storage import paging

KEY_TYPES = (date, datetime, int, str)


def test_a_cursor_gives_back_its_key():
    key = (date(2026, 11, 3), datetime(2026, 11, 3, 9, 30, tzinfo=UTC), 42, "a/b c")
    cursor = paging.encode("disputes", key)
    assert paging.decode("disputes", cursor, KEY_TYPES) == key
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # safe in a URL as it is


def test_a_cursor_of_another_listing_is_refused():
    cursor = paging.encode("disputes", (1,))
    with pytest.raises(InputError, match="not one this listing gave"):
        paging.decode("audit", cursor, (int,))


@pytest.mark.parametrize("cursor", [
    "", "!!!", "e30", base64.urlsafe_b64encode(b'["disputes"]').decode(),
    base64.urlsafe_b64encode(json.dumps(["disputes", "7"]).encode()).decode(),  # a text for a number
    base64.urlsafe_b64encode(json.dumps(["disputes", True]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps(["disputes", 1, 2]).encode()).decode(),  # one part too many
])
def test_a_cursor_that_is_not_a_key_is_refused(cursor):
    with pytest.raises(InputError):
        paging.decode("disputes", cursor, (int,))


def test_pages_walk_a_table_by_keyset_whichever_way_it_is_ordered():
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    rows = sa.Table("rows", meta, sa.Column("day", sa.Date), sa.Column("id", sa.Integer, primary_key=True))
    meta.create_all(engine)
    with engine.begin() as conn:
        # Several rows share a day: the id breaks the tie, so no row is shown twice or skipped.
        conn.execute(rows.insert(), [{"day": date(2026, 1, 1 + i // 3), "id": i} for i in range(10)])
    for descending in (False, True):
        seen: list[int] = []
        cursor = None
        while True:
            query = sa.select(rows.c.day, rows.c.id)
            order = (rows.c.day, rows.c.id)
            if cursor is not None:
                query = paging.after(query, order, paging.decode("rows", cursor, (date, int)),
                                     descending=descending)
            with engine.connect() as conn:
                found = conn.execute(paging.ordered(query, order, 4, descending=descending)).all()
            shown = paging.page(found, 4, "rows", lambda r: (r.day, r.id))
            assert len(shown.items) <= 4
            seen += [r.id for r in shown.items]
            cursor = shown.next_cursor
            if cursor is None:
                break
        assert seen == sorted(range(10), reverse=descending)


def test_the_last_full_page_has_no_next_cursor():
    assert paging.page([1, 2], 2, "n", lambda n: (n,)).next_cursor is None
    assert paging.page([1, 2, 3], 2, "n", lambda n: (n,)).next_cursor == paging.encode("n", (2,))
    assert paging.page([], 2, "n", lambda n: (n,)).next_cursor is None


def test_page_sizes_stay_within_bounds():
    assert paging.page_size_within(0) == 1
    assert paging.page_size_within(10_000) == paging.MAX_PAGE_SIZE


def test_a_listing_pages_rows_in_hand_as_it_pages_sql_rows():
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    rows = sa.Table("rows", meta, sa.Column("day", sa.Date), sa.Column("id", sa.Integer, primary_key=True))
    meta.create_all(engine)
    items = [{"day": date(2026, 1, 1 + i // 3), "id": i} for i in range(10)]
    with engine.begin() as conn:
        conn.execute(rows.insert(), items)
    listing = paging.Listing[Any]("rows", (date, int), lambda r: (r["day"], r["id"]))
    for descending in (False, True):
        def from_sql(cursor: str | None, descending: bool = descending) -> paging.Paged[Any]:
            with engine.connect() as conn:
                return listing.read(conn, sa.select(rows), (rows.c.day, rows.c.id), cursor, 3, dict,
                                    descending=descending)

        def in_hand(cursor: str | None, descending: bool = descending) -> paging.Paged[Any]:
            return listing.listed(reversed(items), cursor, 3, descending=descending)

        expected = sorted(range(10), reverse=descending)
        assert [r["id"] for r in paging.every(from_sql)] == expected
        assert [r["id"] for r in paging.every(in_hand)] == expected
        # A cursor of one reads on in the other: the same key, the same rule.
        first = from_sql(None)
        assert in_hand(first.next_cursor).items == from_sql(first.next_cursor).items
    with pytest.raises(InputError):
        listing.listed(items, paging.encode("other", (date(2026, 1, 1), 1)), 3)


def walk(get: Callable[..., Any], url: str, field: str, page_size: int = 2,
         **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged API listing, read `page_size` at a time with `get` (a test client's get with
    its key), each page checked: no longer than asked, its size echoed, the last one without a cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        r = get(url, params={**params, "page_size": page_size, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["page_size"] == page_size and len(body[field]) <= page_size
        items += body[field]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert len(body[field]) == page_size  # only a full page says another follows
    raise AssertionError(f"{url} never reached its last page")
