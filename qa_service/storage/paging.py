"""Keyset pages, one style for every listing.

A listing is ordered by a key that names each row once (its sort columns, then an id). A page is read
with one row more than it shows, which says whether another follows; the cursor of the next page is
the key of the last row shown, so the next page starts right after it: a page deep in the list costs
what the first does, and rows arriving meanwhile shift nothing.

A cursor is opaque to clients (URL-safe base64 of JSON) and names its listing, so a cursor given by one
listing and passed to another is refused like any other cursor the listing did not give.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from qa_service.errors import InputError
from qa_service.storage.db import utc
from qa_service.storage.repository import canonical_uuid

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50

T = TypeVar("T")
KeyValue = str | int | date | datetime
# A call's place in a listing of calls: its call date, the time it was received, its id.
CallKey = tuple[date, datetime, str]
# What a key's parts are read back as: str, int, date or datetime (always in UTC).
KeyType = type


@dataclass(frozen=True)
class Paged(Generic[T]):
    """One page of a listing and the cursor of the page after it (None: the last page)."""

    items: list[T]
    page_size: int
    next_cursor: str | None = None


def page_size_within(page_size: int) -> int:
    """A page size within 1 and MAX_PAGE_SIZE."""
    return min(max(1, page_size), MAX_PAGE_SIZE)


def encode(listing: str, key: Sequence[KeyValue]) -> str:
    """The cursor naming a row's place in a listing's order."""
    parts: list[str | int] = []
    for value in key:
        if isinstance(value, datetime):
            parts.append(utc(value).isoformat())
        elif isinstance(value, date):
            parts.append(value.isoformat())
        else:
            parts.append(value)
    raw = json.dumps([listing, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(listing: str, cursor: str, types: Sequence[KeyType]) -> tuple[Any, ...]:
    """The key a cursor of this listing names, read back as `types`; InputError for any other text."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        named, *parts = json.loads(raw)
        if named != listing or len(parts) != len(types):
            raise ValueError(cursor)
        return tuple(_read(part, kind) for part, kind in zip(parts, types, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise refused() from None


def refused() -> InputError:
    """The error for a cursor the listing did not give."""
    return InputError("the cursor is not one this listing gave: pass the next_cursor of the page before, "
                      "or leave it out for the first page")


def _read(part: Any, kind: KeyType) -> KeyValue:
    if kind is datetime:
        return utc(datetime.fromisoformat(part))
    if kind is date:
        return date.fromisoformat(part)
    if kind is int:
        if isinstance(part, bool) or not isinstance(part, int):
            raise ValueError(part)
        return part
    if not isinstance(part, str):
        raise ValueError(part)
    return part


def after(query: sa.Select, order: Sequence[sa.ColumnElement[Any]], key: Sequence[Any], *,
          descending: bool) -> sa.Select:
    """The query narrowed to the rows after `key` in the order (all columns one way)."""
    row = sa.tuple_(*order)
    bound = sa.tuple_(*(sa.literal(value, col.type) for value, col in zip(key, order, strict=True)))
    return query.where(row < bound if descending else row > bound)


def ordered(query: sa.Select, order: Sequence[sa.ColumnElement[Any]], page_size: int, *,
            descending: bool) -> sa.Select:
    """The query in the listing's order, one row more than a page (to tell whether another follows)."""
    return query.order_by(*(col.desc() if descending else col.asc() for col in order)).limit(page_size + 1)


def page(rows: Sequence[T], page_size: int, listing: str,
         key_of: Callable[[T], Sequence[KeyValue]]) -> Paged[T]:
    """The page shown from rows read with `ordered` (page_size + 1 of them at most)."""
    shown = list(rows[:page_size])
    more = len(rows) > page_size and bool(shown)
    cursor = encode(listing, key_of(shown[-1])) if more else None
    return Paged(items=shown, page_size=page_size, next_cursor=cursor)


@dataclass(frozen=True)
class Listing(Generic[T]):
    """A listing read from SQL and from memory alike: its name (which its cursors carry), the types of its
    key's parts and a row's key (the sort columns, then what makes it unique). With `uuid_id` the key's
    last part is a UUID (a call's, a run's): a cursor naming anything else is refused before a UUID
    column is compared with it, and the id is read back in its usual form."""

    name: str
    types: tuple[KeyType, ...]
    key_of: Callable[[T], tuple[Any, ...]]
    uuid_id: bool = False

    def decode(self, cursor: str) -> tuple[Any, ...]:
        """The key a cursor of this listing names; InputError for any other text."""
        key = decode(self.name, cursor, self.types)
        if not self.uuid_id:
            return key
        usual = canonical_uuid(key[-1])
        if usual is None:
            raise refused()
        return (*key[:-1], usual)

    def after(self, cursor: str | None) -> tuple[Any, ...] | None:
        """The key a page starts after (None: the first page); InputError for a cursor this listing did not
        give."""
        return self.decode(cursor) if cursor is not None else None

    def page(self, rows: Sequence[T], page_size: int) -> Paged[T]:
        """The page shown from rows read with `ordered` (page_size + 1 of them at most)."""
        return page(rows, page_size, self.name, self.key_of)

    def read(self, conn: sa.Connection, query: sa.Select, order: Sequence[sa.ColumnElement[Any]],
             cursor: str | None, page_size: int, record: Callable[[Any], T], *,
             descending: bool = False) -> Paged[T]:
        """One page of the query's rows in this listing's order (`order`: its key's columns, all one way),
        after the row the cursor names, each row made a record by `record`."""
        if cursor is not None:
            query = after(query, order, self.decode(cursor), descending=descending)
        rows = conn.execute(ordered(query, order, page_size, descending=descending)).mappings()
        return self.page([record(r) for r in rows], page_size)

    def listed(self, items: Iterable[T], cursor: str | None, page_size: int, *,
               descending: bool = False) -> Paged[T]:
        """A page of rows in hand (the in-memory stores, lists built in Python): the same order and the
        same "strictly after the cursor's key" rule as a page read from SQL."""
        rows = sorted(items, key=self.key_of, reverse=descending)
        if cursor is not None:
            key = self.decode(cursor)
            rows = [r for r in rows if (self.key_of(r) < key if descending else self.key_of(r) > key)]
        return self.page(rows[:page_size + 1], page_size)


def every(read: Callable[[str | None], Paged[T]]) -> Iterator[T]:
    """Every item of a listing, page after page (for the CLI and the worker, which want them all)."""
    cursor: str | None = None
    while True:
        shown = read(cursor)
        yield from shown.items
        if shown.next_cursor is None:
            return
        cursor = shown.next_cursor
