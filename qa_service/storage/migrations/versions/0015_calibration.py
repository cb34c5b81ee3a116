"""Calibration sessions, and dual review's second reviewer.

`calibration_sessions` with its `calibration_calls` (pinned to a scorecard version),
`calibration_reviewers` and `calibration_sheets` (one reviewer's answers for one call). `scorecards`
gains `second_review`: a call under dual review whose reviewer's verdict waits for a second reviewer.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("scorecards") as batch:
        batch.add_column(sa.Column("second_review", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "calibration_sessions",
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by_key_id", sa.String(36), nullable=True),
        sa.Column("created_by_name", sa.String(200), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("closed_at", Timestamp, nullable=True),
        sa.Column("closed_by_name", sa.String(200), nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_calibration_sessions_status"),
    )
    op.create_index("ix_calibration_sessions_created", "calibration_sessions", ["created_at"])
    op.create_table(
        "calibration_calls",
        sa.Column("session_id", sa.Uuid(as_uuid=False),
                  sa.ForeignKey("calibration_sessions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("scorecard_version", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_calibration_calls_call", "calibration_calls", ["call_id"])
    op.create_table(
        "calibration_reviewers",
        sa.Column("session_id", sa.Uuid(as_uuid=False),
                  sa.ForeignKey("calibration_sessions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key_id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_table(
        "calibration_sheets",
        sa.Column("session_id", sa.Uuid(as_uuid=False),
                  sa.ForeignKey("calibration_sessions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("reviewer_key_id", sa.String(36), primary_key=True),
        sa.Column("answers", JSONType, nullable=False),
        sa.Column("submitted_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("calibration_sheets")
    op.drop_table("calibration_reviewers")
    op.drop_index("ix_calibration_calls_call", table_name="calibration_calls")
    op.drop_table("calibration_calls")
    op.drop_index("ix_calibration_sessions_created", table_name="calibration_sessions")
    op.drop_table("calibration_sessions")
    with op.batch_alter_table("scorecards") as batch:
        batch.drop_column("second_review")
