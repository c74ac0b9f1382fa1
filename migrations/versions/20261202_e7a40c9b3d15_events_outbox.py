"""events: the outbox of state changes reported to customers (webhooks)

Revision ID: e7a40c9b3d15
Revises: b41d6e2f8a90
Create Date: 2026-12-02 13:50:00.000000+00:00

One row per event, written in the transaction of the change it reports (``models.event``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e7a40c9b3d15"
down_revision: str | None = "b41d6e2f8a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_events_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_workspace_id_id", "events", ["workspace_id", "id"])
    op.create_index("ix_events_workspace_id_type_id", "events", ["workspace_id", "type", "id"])
    op.create_index("ix_events_created_at", "events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_events_created_at", table_name="events")
    op.drop_index("ix_events_workspace_id_type_id", table_name="events")
    op.drop_index("ix_events_workspace_id_id", table_name="events")
    op.drop_table("events")
