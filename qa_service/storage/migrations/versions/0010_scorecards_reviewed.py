"""A scorecard's provisional verdict and its reviewed verdict, as columns the aggregates read.

`provisional` is true while a FAIL that rests on weak evidence waits for a reviewer. The reviewed
columns hold the verdict after reviews (score, pass, auto-fail and the violations that count, a
confirmed item to check among them); they are empty until a reviewer changes something, and the
aggregates read them in place of the automatic ones. Scorecards stored before this are neither
provisional nor reviewed. Reviews may now also confirm or dismiss an item to check and confirm a
provisional verdict.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
KINDS = ("criterion", "violation")
ACTIONS = ("override_pass", "override_fail", "dismiss", "restore")


def _checks(kinds: tuple[str, ...], actions: tuple[str, ...]) -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_constraint("ck_reviews_target_kind", type_="check")
        batch.drop_constraint("ck_reviews_action", type_="check")
        batch.create_check_constraint("ck_reviews_target_kind", f"target_kind IN {kinds!r}")
        batch.create_check_constraint("ck_reviews_action", f"action IN {actions!r}")


def upgrade() -> None:
    _checks((*KINDS, "to_check", "verdict"), (*ACTIONS, "confirm"))
    with op.batch_alter_table("scorecards") as batch:
        batch.add_column(sa.Column("provisional", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("reviewed_score", sa.Float, nullable=True))
        batch.add_column(sa.Column("reviewed_passed", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("reviewed_auto_fail", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("reviewed_violations", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scorecards") as batch:
        for column in ("reviewed_violations", "reviewed_auto_fail", "reviewed_passed", "reviewed_score",
                       "provisional"):
            batch.drop_column(column)
    op.execute("DELETE FROM reviews WHERE target_kind IN ('to_check', 'verdict') OR action = 'confirm'")
    _checks(KINDS, ACTIONS)
