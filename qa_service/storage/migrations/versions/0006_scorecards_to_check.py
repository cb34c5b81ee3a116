"""How many items a scorecard holds for a person to check (`scorecards.to_check`).

Outdated-policy mentions that rest on a number the recogniser was unsure of are listed in a
scorecard's `to_check`, never counted as violations; the review queue takes every call that has
some. Scorecards stored before they existed have none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scorecards") as batch:
        batch.add_column(sa.Column("to_check", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("scorecards") as batch:
        batch.drop_column("to_check")
