"""How a conversation was held (`calls.channel`: call, chat, email, im), as the sender said.

Written conversations (chats, e-mails, instant messages) are timed against service rules that differ
by channel; a sender may name the channel in a form field beside the transcript. Calls stored before
it have none: the input says (a transcript's `channel`), else audio is a call and text a chat.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("channel", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("channel")
