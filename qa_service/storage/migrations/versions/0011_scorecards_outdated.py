"""How many outdated-policy violations a scorecard lists (`scorecards.outdated`).

A policy pack now says what an outdated mention costs (note, points off, auto-fail), and every call
with one goes to the review queue whatever the cost; the queue reads this count. Scorecards stored
before it are counted from their JSON here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _count(card: Any) -> int:
    if not isinstance(card, dict):
        return 0
    return sum(1 for v in card.get("violations") or []
               if isinstance(v, dict) and v.get("kind") == "outdated_policy")


def upgrade() -> None:
    with op.batch_alter_table("scorecards") as batch:
        batch.add_column(sa.Column("outdated", sa.Integer, nullable=False, server_default="0"))
    sc = sa.table("scorecards", sa.column("seq", sa.Integer), sa.column("data", JSONType),
                  sa.column("outdated", sa.Integer))
    conn = op.get_bind()
    # Only scorecards whose JSON names the kind at all are read.
    rows = conn.execute(sa.select(sc.c.seq, sc.c.data)
                        .where(sa.cast(sc.c.data, sa.Text).like('%"outdated_policy"%'))).all()
    for seq, data in rows:
        n = _count(data)
        if n:
            conn.execute(sc.update().where(sc.c.seq == seq).values(outdated=n))


def downgrade() -> None:
    with op.batch_alter_table("scorecards") as batch:
        batch.drop_column("outdated")
