"""The criterion rollup summed per team, vendor, call date, rubric and criterion.

The team and vendor comparisons read every group's criterion pass rates over the range; summing the
per-agent criterion rows for a year reads them all. This table holds the same sums per team day
(`storage.rollups.refresh_groups` keeps it in every write's transaction); this migration fills it from
the per-agent rows.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qa_service.storage import rollups

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_criterion_rollups",
        sa.Column("team", sa.String(100), primary_key=True),
        sa.Column("vendor", sa.String(100), primary_key=True),
        sa.Column("call_date", sa.Date, primary_key=True),
        sa.Column("rubric_id", sa.String(100), primary_key=True),
        sa.Column("criterion_id", sa.String(200), primary_key=True),
        sa.Column("applied", sa.Integer, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("section", sa.Text, nullable=True),
    )
    op.create_index("ix_group_criterion_rollups_date", "group_criterion_rollups", ["call_date"])
    rollups.rebuild_groups(op.get_bind())


def downgrade() -> None:
    op.drop_table("group_criterion_rollups")
