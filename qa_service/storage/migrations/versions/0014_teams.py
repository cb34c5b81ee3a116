"""Agents' teams and vendors by date, and the scope of a supervisor's key.

`team_memberships` says which team and vendor (an outsourcing company, or in-house) an agent was in
from one date to another; a call counts for the membership in force on its date. `api_keys` gains
`scope_teams` and `scope_vendors`: a key with either reads only the calls of those teams and vendors.
Keys made before this have no scope and read as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scope_teams", JSONType, nullable=True))
        batch.add_column(sa.Column("scope_vendors", JSONType, nullable=True))
    op.create_table(
        "team_memberships",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(100), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("vendor", sa.String(100), nullable=False),
        sa.Column("since", sa.Date, nullable=False),
        sa.Column("until", sa.Date, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("agent_id", "since", name="uq_team_memberships_agent_since"),
        sa.CheckConstraint("until IS NULL OR since <= until", name="ck_team_memberships_dates"),
    )
    op.create_index("ix_team_memberships_team", "team_memberships", ["team"])
    op.create_index("ix_team_memberships_vendor", "team_memberships", ["vendor"])


def downgrade() -> None:
    op.drop_index("ix_team_memberships_vendor", table_name="team_memberships")
    op.drop_index("ix_team_memberships_team", table_name="team_memberships")
    op.drop_table("team_memberships")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scope_vendors")
        batch.drop_column("scope_teams")
