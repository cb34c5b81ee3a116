"""The first characters of each API key (`api_keys.prefix`), kept so people can tell keys apart.

A key is stored as a hash only; its first eight characters after `qak_` are not enough to use it
(about 210 bits stay secret) but let `qa-service keys list`, `GET /v1/keys` and the audit log of a
refused request name the key someone holds. Keys made before this column existed have none.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("prefix", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("prefix")
