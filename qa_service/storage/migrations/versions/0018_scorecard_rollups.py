"""The aggregates' summary table: one row per agent, call date and rubric over the latest scorecards.

`scorecard_rollups` keeps the count, reviewed score sum, passes, auto-fails, provisional verdicts and
violations by kind, with the agent's team and vendor on that date; `criterion_rollups` the same per
criterion (applied, passed, title, section, place in the rubric). The agent, team and vendor views add
their rows up. The storage layer keeps it in the transaction of every write (`storage.rollups`);
this migration fills it from the scorecards already stored. Two indexes on `calls` serve the listings'
keyset pages (newest call date first, over all calls and per agent).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qa_service.storage import rollups

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scorecard_rollups",
        sa.Column("agent_id", sa.String(100), primary_key=True),
        sa.Column("call_date", sa.Date, primary_key=True),
        sa.Column("rubric_id", sa.String(100), primary_key=True),
        sa.Column("team", sa.String(100), nullable=True),
        sa.Column("vendor", sa.String(100), nullable=True),
        sa.Column("calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("score_sum", sa.Float, nullable=False, server_default="0"),
        sa.Column("passed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("auto_fail", sa.Integer, nullable=False, server_default="0"),
        sa.Column("provisional", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prohibited", sa.Integer, nullable=False, server_default="0"),
        sa.Column("outdated_policy", sa.Integer, nullable=False, server_default="0"),
        sa.Column("newest_seq", sa.Integer, nullable=True),
    )
    op.create_index("ix_scorecard_rollups_date", "scorecard_rollups", ["call_date"])
    op.create_index("ix_scorecard_rollups_team", "scorecard_rollups", ["team", "call_date"])
    op.create_index("ix_scorecard_rollups_vendor", "scorecard_rollups", ["vendor", "call_date"])
    op.create_table(
        "criterion_rollups",
        sa.Column("agent_id", sa.String(100), primary_key=True),
        sa.Column("call_date", sa.Date, primary_key=True),
        sa.Column("rubric_id", sa.String(100), primary_key=True),
        sa.Column("criterion_id", sa.String(200), primary_key=True),
        sa.Column("team", sa.String(100), nullable=True),
        sa.Column("vendor", sa.String(100), nullable=True),
        sa.Column("applied", sa.Integer, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("section", sa.Text, nullable=True),
        sa.Column("newest_seq", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_criterion_rollups_date", "criterion_rollups", ["call_date"])
    op.create_index("ix_criterion_rollups_team", "criterion_rollups", ["team", "call_date"])
    op.create_index("ix_criterion_rollups_vendor", "criterion_rollups", ["vendor", "call_date"])
    op.create_index("ix_criterion_rollups_seq", "criterion_rollups", ["newest_seq"])
    op.create_index("ix_calls_listing", "calls", ["call_date", "created_at", "id"])
    op.create_index("ix_calls_agent_listing", "calls", ["agent_id", "call_date", "created_at", "id"])
    rollups.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("criterion_rollups")
    op.drop_index("ix_calls_agent_listing", "calls")
    op.drop_index("ix_calls_listing", "calls")
    op.drop_table("scorecard_rollups")
