"""Agents' certifications and training records, and the count of a scorecard's findings.

`certifications` holds what an agent is certified for (the rubric and policy pack ids it covers) and
when; `training_records` which policy pack versions an agent has had the refresher for. A scorecard's
`findings` (e.g. `certification_lapsed`) change no score but put the call in the review queue; the
column counts them. Scorecards stored before this have none.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("scorecards") as batch:
        batch.add_column(sa.Column("findings", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "certifications",
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("agent_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("covers", JSONType, nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("expires_on", sa.Date, nullable=False),
        sa.Column("notified_expiry", sa.Date, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("agent_id", "name", "issued_on", name="uq_certifications_agent_name_issued"),
        sa.CheckConstraint("issued_on <= expires_on", name="ck_certifications_dates"),
    )
    op.create_index("ix_certifications_expires", "certifications", ["expires_on"])
    op.create_table(
        "training_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(100), nullable=False),
        sa.Column("pack_id", sa.String(100), nullable=False),
        sa.Column("pack_version", sa.String(50), nullable=False),
        sa.Column("completed_on", sa.Date, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("agent_id", "pack_id", "pack_version", name="uq_training_records_agent_version"),
    )
    op.create_index("ix_training_records_pack", "training_records", ["pack_id", "pack_version"])


def downgrade() -> None:
    op.drop_index("ix_training_records_pack", table_name="training_records")
    op.drop_table("training_records")
    op.drop_index("ix_certifications_expires", table_name="certifications")
    op.drop_table("certifications")
    with op.batch_alter_table("scorecards") as batch:
        batch.drop_column("findings")
