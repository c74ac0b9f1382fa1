"""messages: the sent-per-workspace index holds only sent messages

Revision ID: a7e3c9d1f0b2
Revises: 9d4f1b6e2c58
Create Date: 2026-11-24 19:40:00.000000+00:00

``ix_messages_workspace_sent_at`` serves the monthly quota and the workspace's sends (both ask for
``sent_at >=`` a moment). As a full index it took an entry at the message's insert and again at its
lease, both with ``sent_at`` NULL, that no query reads; partial, it takes one, when the message is sent.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7e3c9d1f0b2"
down_revision: str | None = "9d4f1b6e2c58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_messages_workspace_sent_at", table_name="messages")
    op.create_index(
        "ix_messages_workspace_sent_at",
        "messages",
        ["workspace_id", "sent_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_workspace_sent_at", table_name="messages")
    op.create_index("ix_messages_workspace_sent_at", "messages", ["workspace_id", "sent_at"], unique=False)
