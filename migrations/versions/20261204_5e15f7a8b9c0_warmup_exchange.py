"""warmup exchange: one row per warmup message, and each inbox's daily warmup count

Revision ID: 5e15f7a8b9c0
Revises: 3c15d5e6f7a8
Create Date: 2026-12-04 21:00:00.000000+00:00

``warmup_messages``: a planned, sent and received warmup message between two warming inboxes (the state
machine is in ``nimbus_api.warmup``). ``email_accounts.warmup_daily_limit``: the inbox's own daily warmup
count (NULL: the deployment's default, ``NIMBUS_WARMUP_DAILY_LIMIT``), apart from its campaign budget.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5e15f7a8b9c0"
down_revision: str | None = "3c15d5e6f7a8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("email_accounts", sa.Column("warmup_daily_limit", sa.Integer(), nullable=True))
    op.create_table(
        "warmup_messages",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("sender_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("recipient_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("parent_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("message_id_header", sa.String(300), nullable=False),
        sa.Column("in_reply_to", sa.String(300), nullable=True),
        sa.Column("references", sa.Text(), nullable=True),
        sa.Column("state", sa.String(12), nullable=False, server_default="planned"),
        sa.Column("send_at", TS, nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("received_at", TS, nullable=True),
        sa.Column("landed", sa.String(10), nullable=True),
        sa.Column("handled_at", TS, nullable=True),
        sa.Column("rescued", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("replied", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "state IN ('planned', 'sending', 'sent', 'failed', 'unknown', 'skipped')", name="state_known"
        ),
        sa.CheckConstraint("landed IS NULL OR landed IN ('inbox', 'junk')", name="landed_known"),
        sa.ForeignKeyConstraint(["sender_id"], ["email_accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["recipient_id"], ["email_accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_id"], ["warmup_messages.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id_header"),
        sa.UniqueConstraint("sender_id", "day", "slot"),
        sa.UniqueConstraint("parent_id"),
    )
    op.create_index("ix_warmup_messages_recipient", "warmup_messages", ["recipient_id", "received_at"])
    op.create_index(
        "ix_warmup_messages_due",
        "warmup_messages",
        ["send_at"],
        postgresql_where=sa.text("state IN ('planned', 'sending')"),
    )
    op.create_index(
        "ix_warmup_messages_unhandled",
        "warmup_messages",
        ["recipient_id"],
        postgresql_where=sa.text("received_at IS NOT NULL AND handled_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_warmup_messages_unhandled", table_name="warmup_messages")
    op.drop_index("ix_warmup_messages_due", table_name="warmup_messages")
    op.drop_index("ix_warmup_messages_recipient", table_name="warmup_messages")
    op.drop_table("warmup_messages")
    op.drop_column("email_accounts", "warmup_daily_limit")
