"""Full-text search over the redacted transcripts: `transcript_search`, one row per call.

SQLite: an FTS5 table (words split by "unicode61", accents kept as PostgreSQL keeps them).
PostgreSQL: the text with a generated `tsvector` ("simple" configuration: no stemming, as on SQLite;
the brackets of a placeholder such as `<PERSON>` read as spaces, or its parser would take it for a
markup tag and drop it) under a GIN index, removed with its call. Filled here from every call's
latest scorecard that still holds its transcript.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qa_service.storage.search import TABLE, index_cards

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute(f"""
            CREATE TABLE {TABLE} (
                call_id uuid PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
                body text NOT NULL,
                document tsvector
                    GENERATED ALWAYS AS (to_tsvector('simple', translate(body, '<>', '  '))) STORED
            )""")
        op.execute(f"CREATE INDEX ix_{TABLE}_document ON {TABLE} USING gin (document)")
    else:
        op.execute(f"CREATE VIRTUAL TABLE {TABLE} USING fts5(call_id UNINDEXED, body, "
                   "tokenize = 'unicode61 remove_diacritics 0')")
    cards = sa.table("scorecards", sa.column("call_id", sa.Uuid(as_uuid=False)), sa.column("data", sa.JSON),
                     sa.column("latest", sa.Boolean), sa.column("seq", sa.Integer))
    last = 0
    while True:
        query = (sa.select(cards.c.seq, cards.c.call_id, cards.c.data)
                 .where(cards.c.latest, cards.c.seq > last).order_by(cards.c.seq).limit(BATCH))
        rows = conn.execute(query).all()
        if not rows:
            break
        index_cards(conn, [(str(r.call_id), r.data) for r in rows])
        last = rows[-1].seq


def downgrade() -> None:
    op.execute(f"DROP TABLE {TABLE}")
