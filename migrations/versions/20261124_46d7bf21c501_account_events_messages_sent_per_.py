"""account events, messages sent per workspace index

Revision ID: 46d7bf21c501
Revises: ec68a5b547dc
Create Date: 2026-11-24 08:18:14.714517+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "46d7bf21c501"
down_revision: str | None = "ec68a5b547dc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_account_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_events")),
    )
    op.create_index("ix_account_events_account_id_id", "account_events", ["account_id", "id"], unique=False)
    op.create_index(op.f("ix_account_events_workspace_id"), "account_events", ["workspace_id"], unique=False)
    op.create_index("ix_messages_workspace_sent_at", "messages", ["workspace_id", "sent_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_messages_workspace_sent_at", table_name="messages")
    op.drop_index(op.f("ix_account_events_workspace_id"), table_name="account_events")
    op.drop_index("ix_account_events_account_id_id", table_name="account_events")
    op.drop_table("account_events")
