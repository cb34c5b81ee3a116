"""Full-text search over the redacted transcripts of the calls' latest scorecards.

One row per call in `transcript_search`: the call id and the text of its latest scorecard's redacted
transcript (the scorecard never holds the unredacted words). SQLite keeps it in an FTS5 table,
PostgreSQL in a plain table with a generated `tsvector` under a GIN index. Both split words the same
way, without stemming or folding accents ("unicode61" and the "simple" configuration), both ignoring
case: a word of a transcript finds the call on either database, and a name left as `<PERSON>` is
found by "person" only.

The row is written in the transaction that stores a scorecard version, and deleted in the one that
erases the call or strips its transcript under retention; on SQLite the index is then merged, so the
erased words leave the index's own pages too (`optimize`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from qa_service.storage import paging
from qa_service.storage import tables as t
from qa_service.storage.db import SqlPart, utc
from qa_service.storage.repository import canonical_uuid

TABLE = "transcript_search"
# Highlight marks around the words found, in the snippets; the web page turns them into <mark>.
MARK_START, MARK_END = "\x02", "\x03"
SNIPPET_WORDS = 16
_WORD = re.compile(r"\w+")
# Columns outside tables.py's metadata: the migrations' comparison leaves these out (the table's SQL
# differs per database, and SQLite's FTS5 keeps its own shadow tables beside it).
_meta = sa.MetaData()
_sqlite_table = sa.Table(TABLE, _meta, sa.Column("call_id", sa.Uuid(as_uuid=False)),
                         sa.Column("body", sa.Text))
_pg_meta = sa.MetaData()
_pg_table = sa.Table(TABLE, _pg_meta, sa.Column("call_id", sa.Uuid(as_uuid=False), primary_key=True),
                     sa.Column("body", sa.Text), sa.Column("document", sa.Text))


def is_search_table(name: str) -> bool:
    """Whether a table is the search index or one of SQLite's FTS5 shadow tables of it."""
    return name == TABLE or name.startswith(TABLE + "_")


def words(query: str) -> list[str]:
    """The words of a query, as both databases split text (anything else in it is ignored)."""
    return _WORD.findall(query)


def transcript_text(card: dict[str, Any]) -> str:
    """The searchable text of a scorecard: its redacted transcript's turns, one per line."""
    if "transcript_removed_at" in card:
        return ""
    return "\n".join(str(turn.get("text") or "") for turn in card.get("transcript") or []
                     if isinstance(turn, dict)).strip()


def _table(conn: Any) -> sa.Table:
    return _pg_table if conn.dialect.name == "postgresql" else _sqlite_table


def index_cards(conn: Any, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Put each call's newest scorecard text in the index, in the caller's transaction (the last card of
    a call in `items` is its newest)."""
    newest = dict(items)
    if not newest:
        return
    table = _table(conn)
    unindex(conn, list(newest), optimize=False)
    rows = [{"call_id": call_id, "body": text} for call_id, card in newest.items()
            if (text := transcript_text(card))]
    if rows:
        conn.execute(table.insert().values(call_id=sa.bindparam("call_id"), body=sa.bindparam("body")), rows)


def unindex(conn: Any, call_ids: Sequence[str], *, optimize: bool = True) -> int:
    """Delete the calls' text from the index, in the caller's transaction; with `optimize` on SQLite the
    index is merged so the words go from its pages too (the rows alone would leave them until a merge)."""
    table = _table(conn)
    removed = 0
    for k in range(0, len(call_ids), 500):
        part = list(call_ids[k:k + 500])
        removed += conn.execute(table.delete().where(table.c.call_id.in_(part))).rowcount or 0
    if removed and optimize:
        merge(conn)
    return removed


def merge(conn: Any) -> None:
    """On SQLite, rewrite the FTS5 index in one segment: deleted rows leave their words in the index's
    pages until their segment is merged, and this merges them all (its cost grows with the index:
    docs/decisions/0019-search.md). PostgreSQL's index holds no deleted text: nothing to do."""
    if conn.dialect.name == "sqlite":
        conn.execute(sa.text(f"INSERT INTO {TABLE}({TABLE}) VALUES ('optimize')"))


# A hit's place in the search's order (newest first).
SearchKey = paging.CallKey


@dataclass(frozen=True)
class Hit:
    """A call whose transcript holds every word searched for, with the lines around the first match."""

    call_id: str
    external_id: str | None
    agent_id: str
    call_date: date
    received_at: datetime
    snippet: str  # the words found between MARK_START and MARK_END

    @property
    def key(self) -> SearchKey:
        """The hit's place in the search's order."""
        return self.call_date, self.received_at, self.call_id


class SqlSearch(SqlPart):
    """The search index over SQL, and the external ids of calls for the pages that list them."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def find(self, query: str, *, after: SearchKey | None = None, limit: int = 50) -> list[Hit]:
        """Calls whose redacted transcript holds every word of `query`, newest first (by call date, time
        received and call id), strictly after the `after` key; none when the query has no words."""
        terms = words(query)
        if not terms:
            return []
        c = t.calls
        with self.engine.connect() as conn:
            table = _table(conn)
            if conn.dialect.name == "postgresql":
                tsquery = sa.func.plainto_tsquery("simple", " ".join(terms))
                matches = table.c.document.op("@@")(tsquery)
                snippet = sa.func.ts_headline(
                    "simple", table.c.body, tsquery,
                    f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={SNIPPET_WORDS}, "
                    f"MinWords={SNIPPET_WORDS // 2}, MaxFragments=1, FragmentDelimiter=' … '")
            else:
                # Each word quoted: FTS5's query syntax (AND, NEAR, *, column filters) stays out of it.
                matches = sa.literal_column(TABLE).op("MATCH")(" ".join(f'"{w}"' for w in terms))
                snippet = sa.func.snippet(sa.literal_column(TABLE), 1, MARK_START, MARK_END, "…",
                                          SNIPPET_WORDS)
            joined = table.join(c, c.c.id == table.c.call_id)
            order = (c.c.call_date, c.c.created_at, c.c.id)
            # The page's calls first, then the snippets of those alone: a common word matches most calls,
            # and cutting a snippet out of each before sorting them would cost the most.
            page = sa.select(c.c.id).select_from(joined).where(matches)
            if after is not None:
                page = paging.after(page, order, after, descending=True)
            page = page.order_by(*(col.desc() for col in order)).limit(limit)
            q = (sa.select(*order, c.c.external_id, c.c.agent_id, snippet)
                 .select_from(joined).where(matches, c.c.id.in_(page.scalar_subquery()))
                 .order_by(*(col.desc() for col in order)))
            return [Hit(call_id=str(r[2]), external_id=r[3], agent_id=r[4], call_date=r[0],
                        received_at=utc(r[1]), snippet=str(r[5])) for r in conn.execute(q)]

    def indexed(self, call_id: str) -> str | None:
        """The text the index holds for a call (None when it holds none)."""
        found = canonical_uuid(call_id)
        if found is None:
            return None
        with self.engine.connect() as conn:
            table = _table(conn)
            body = conn.execute(sa.select(table.c.body).where(table.c.call_id == found)).scalar()
        return str(body) if body is not None else None

    def external_ids(self, call_ids: Sequence[str]) -> dict[str, str | None]:
        """The external id of each of these calls that exists, by call id (None: the call has none)."""
        ids = [i for i in (canonical_uuid(x) for x in call_ids) if i is not None]
        out: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for k in range(0, len(ids), 500):
                q = sa.select(t.calls.c.id, t.calls.c.external_id).where(t.calls.c.id.in_(ids[k:k + 500]))
                out.update({str(i): e for i, e in conn.execute(q)})
        return out
