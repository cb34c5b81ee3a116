"""Scorecards: a `latest` flag on each call's newest version, and an index covering agent aggregates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scorecards", sa.Column("latest", sa.Boolean, nullable=False, server_default=sa.true()))
    # Every existing version but the newest of its call stops being the latest.
    op.execute(
        "UPDATE scorecards SET latest = false WHERE version < "
        "(SELECT max(s2.version) FROM scorecards s2 WHERE s2.call_id = scorecards.call_id)")
    op.create_index("ix_scorecards_agent_latest", "scorecards",
                    ["agent_id", "latest", "call_date", "score", "passed", "auto_fail", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_scorecards_agent_latest", table_name="scorecards")
    with op.batch_alter_table("scorecards") as batch:
        batch.drop_column("latest")
