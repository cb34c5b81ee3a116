"""Rescore runs requested through the API (`rescore_runs`): rules, date range, who asked, status, impact.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rescore_runs",
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rubric_id", sa.String(100), nullable=False),
        sa.Column("rubric_version", sa.String(50), nullable=False),
        sa.Column("policy_pack_id", sa.String(100), nullable=True),
        sa.Column("policy_pack_version", sa.String(50), nullable=True),
        sa.Column("since", sa.Date, nullable=True),
        sa.Column("until", sa.Date, nullable=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("requested_by_key_id", sa.String(36), nullable=True),
        sa.Column("requested_by_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("summary", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')",
                           name="ck_rescore_runs_status"),
        sa.CheckConstraint("(policy_pack_id IS NULL) = (policy_pack_version IS NULL)",
                           name="ck_rescore_runs_policy_pack"),
    )
    op.create_index("ix_rescore_runs_created", "rescore_runs", ["created_at"])
    op.create_index("ix_rescore_runs_status", "rescore_runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_rescore_runs_status", table_name="rescore_runs")
    op.drop_index("ix_rescore_runs_created", table_name="rescore_runs")
    op.drop_table("rescore_runs")
