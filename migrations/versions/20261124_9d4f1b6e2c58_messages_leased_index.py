"""messages: partial index on expired leases for the sweeper

Revision ID: 9d4f1b6e2c58
Revises: 6c2e8b4d7a13
Create Date: 2026-11-24 16:20:00.000000+00:00

The sweeper looks for ``leased`` messages whose lease expired every 30 s; with no index that covers it,
it read the whole messages table each time (a sequential scan that grows with every message ever sent).
The index holds only messages in flight.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9d4f1b6e2c58"
down_revision: str | None = "6c2e8b4d7a13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_leased",
        "messages",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'leased'"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_leased", table_name="messages", postgresql_where=sa.text("state = 'leased'"))
