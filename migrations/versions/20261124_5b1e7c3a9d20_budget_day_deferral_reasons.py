"""budget day on messages, deferral reasons on campaigns and enrollments, one index less on messages

Revision ID: 5b1e7c3a9d20
Revises: 46d7bf21c501
Create Date: 2026-11-24 11:45:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5b1e7c3a9d20"
down_revision: str | None = "46d7bf21c501"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("budget_day", sa.Date(), nullable=True))
    # Messages still on their way hold a send of the day they were queued.
    op.execute(
        "UPDATE messages SET budget_day = (created_at AT TIME ZONE 'UTC')::date "
        "WHERE state IN ('queued', 'leased', 'deferred')"
    )
    op.add_column("campaigns", sa.Column("last_deferral", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("enrollments", sa.Column("defer_reason", sa.String(length=200), nullable=True))
    # Fewer index entries per state change on the two hottest tables (every message is written three
    # times, its enrollment twice): ix_messages_workspace_sent_at and uq_enrollments_campaign_id_contact_id
    # already lead with the dropped indexes' column, and the work queues become partial indexes holding
    # only what is due.
    op.drop_index("ix_messages_workspace_id", table_name="messages")
    op.drop_index("ix_enrollments_campaign_id", table_name="enrollments")
    # The rotation stamps each pick past the newest stamp of all: one lookup in this index.
    op.create_index(op.f("ix_email_accounts_last_sent_at"), "email_accounts", ["last_sent_at"], unique=False)
    op.drop_index("ix_messages_work", table_name="messages")
    op.create_index(
        "ix_messages_work",
        "messages",
        ["account_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("state IN ('queued', 'deferred')"),
    )
    op.drop_index("ix_enrollments_due", table_name="enrollments")
    op.create_index(
        "ix_enrollments_due",
        "enrollments",
        ["campaign_id", "next_send_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active' AND next_send_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_email_accounts_last_sent_at"), table_name="email_accounts")
    op.drop_index("ix_enrollments_due", table_name="enrollments")
    op.create_index("ix_enrollments_due", "enrollments", ["status", "next_send_at"], unique=False)
    op.drop_index("ix_messages_work", table_name="messages")
    op.create_index("ix_messages_work", "messages", ["account_id", "state", "retry_at"], unique=False)
    op.create_index("ix_enrollments_campaign_id", "enrollments", ["campaign_id"], unique=False)
    op.create_index("ix_messages_workspace_id", "messages", ["workspace_id"], unique=False)
    op.drop_column("enrollments", "defer_reason")
    op.drop_column("campaigns", "last_deferral")
    op.drop_column("messages", "budget_day")
