"""Which API key uploaded each call (`calls.submitted_by_key_id`).

A key whose role does not read every call (telephony) reads only the calls it uploaded, and a
call id sent again by another client is answered without the stored call's id. Calls stored
before this was recorded name no key: only the roles that read every call read them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("submitted_by_key_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("submitted_by_key_id")
