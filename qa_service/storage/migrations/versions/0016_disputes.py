"""Agents' keys, acknowledgements and disputes of scorecards.

`api_keys` gains `scope_agent` and the role `agent`: an agent's key reads only that agent's own calls
(required for the role, refused for the others). `acknowledgements` records that an agent saw a
scorecard version; `disputes` keeps an agent's dispute of a criterion or violation and QA's resolution
(upheld, or overturned through a review of the target), one open dispute per target of a call.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ROLES = ("admin", "qa", "telephony", "supervisor")
OPEN_DISPUTE = "status = 'open'"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scope_agent", sa.String(100), nullable=True))
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.create_check_constraint("ck_api_keys_role", f"role IN {(*ROLES, 'agent')!r}")
        batch.create_check_constraint("ck_api_keys_agent", "(role = 'agent') = (scope_agent IS NOT NULL)")
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("scorecard_version", sa.Integer, nullable=False),
        sa.Column("agent_id", sa.String(100), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("call_id", "scorecard_version", name="uq_acknowledgements_call_version"),
    )
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.Uuid(as_uuid=False), sa.ForeignKey("calls.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("scorecard_version", sa.Integer, nullable=False),
        sa.Column("rubric_id", sa.String(100), nullable=False),
        sa.Column("agent_id", sa.String(100), nullable=False),
        sa.Column("call_date", sa.Date, nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raised_by_key_id", sa.String(36), nullable=False),
        sa.Column("raised_by_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolution_reason", sa.Text, nullable=True),
        sa.Column("resolved_by_key_id", sa.String(36), nullable=True),
        sa.Column("resolved_by_name", sa.String(200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_id", sa.Integer, nullable=True),
        sa.CheckConstraint("target_kind IN ('criterion', 'violation')", name="ck_disputes_target_kind"),
        sa.CheckConstraint("status IN ('open', 'upheld', 'overturned')", name="ck_disputes_status"),
        sa.CheckConstraint("length(trim(reason)) > 0", name="ck_disputes_reason"),
        sa.CheckConstraint("(status = 'open') = (resolved_at IS NULL)", name="ck_disputes_resolved"),
    )
    op.create_index("ix_disputes_call", "disputes", ["call_id", "id"])
    op.create_index("ix_disputes_status", "disputes", ["status", "id"])
    op.create_index("uq_disputes_one_open", "disputes", ["call_id", "target_kind", "target_id"], unique=True,
                    sqlite_where=sa.text(OPEN_DISPUTE), postgresql_where=sa.text(OPEN_DISPUTE))


def downgrade() -> None:
    op.drop_index("uq_disputes_one_open", table_name="disputes")
    op.drop_index("ix_disputes_status", table_name="disputes")
    op.drop_index("ix_disputes_call", table_name="disputes")
    op.drop_table("disputes")
    op.drop_table("acknowledgements")
    op.execute("DELETE FROM api_keys WHERE role = 'agent'")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_agent", type_="check")
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.create_check_constraint("ck_api_keys_role", f"role IN {ROLES!r}")
        batch.drop_column("scope_agent")
