"""Human review of scorecards (`reviews`) and the audit trail of reads and changes (`audit_log`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("scorecard_version", sa.Integer, nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("reviewer_key_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("reviewer_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("target_kind IN ('criterion', 'violation')", name="ck_reviews_target_kind"),
        sa.CheckConstraint("action IN ('override_pass', 'override_fail', 'dismiss', 'restore')",
                           name="ck_reviews_action"),
        sa.CheckConstraint("length(trim(reason)) > 0", name="ck_reviews_reason"),
    )
    op.create_index("ix_reviews_call", "reviews", ["call_id", "id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=True),
        sa.Column("key_name", sa.String(200), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=True),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("details", sa.String(200), nullable=True),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_target", "audit_log", ["target_id", "at"])
    op.create_index("ix_audit_log_key", "audit_log", ["key_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_key", table_name="audit_log")
    op.drop_index("ix_audit_log_target", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_reviews_call", table_name="reviews")
    op.drop_table("reviews")
