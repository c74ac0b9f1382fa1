"""health: the band and components of each inbox's score, recompute requests, daily snapshots, indexes

Revision ID: 1a15b3c4d5e6
Revises: 0f15a2c3d4e5
Create Date: 2026-12-04 21:00:00.000000+00:00

``email_accounts``: ``health_band`` (``watch``: what the default score of 50 is in), ``health_components``
(the last recompute's components), ``health_computed_at`` and ``health_requested_at`` (an inbox waiting for
its own recompute, indexed while set). ``account_health_daily``: one row per inbox and UTC day. Two indexes
for the 7-day windows the recompute reads per inbox: sent messages, and failed attempts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "1a15b3c4d5e6"
down_revision: str | None = "0f15a2c3d4e5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("email_accounts", sa.Column("health_band", sa.String(10), nullable=False, server_default="watch"))
    op.add_column("email_accounts", sa.Column("health_components", postgresql.JSONB(), nullable=True))
    op.add_column("email_accounts", sa.Column("health_computed_at", TS, nullable=True))
    op.add_column("email_accounts", sa.Column("health_requested_at", TS, nullable=True))
    op.create_index(
        "ix_email_accounts_health_requested",
        "email_accounts",
        ["health_requested_at"],
        postgresql_where=sa.text("health_requested_at IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_account_sent_at",
        "messages",
        ["account_id", "sent_at"],
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
    op.create_index("ix_send_attempts_account_started", "send_attempts", ["account_id", "started_at"])
    op.create_table(
        "account_health_daily",
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("overall_score", sa.Float(), nullable=False),
        sa.Column("reputation_score", sa.Float(), nullable=False),
        sa.Column("band", sa.String(10), nullable=False),
        sa.Column("components", postgresql.JSONB(), nullable=True),
        sa.Column("computed_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_health_daily")
    op.drop_index("ix_send_attempts_account_started", table_name="send_attempts")
    op.drop_index("ix_messages_account_sent_at", table_name="messages")
    op.drop_index("ix_email_accounts_health_requested", table_name="email_accounts")
    op.drop_column("email_accounts", "health_requested_at")
    op.drop_column("email_accounts", "health_computed_at")
    op.drop_column("email_accounts", "health_components")
    op.drop_column("email_accounts", "health_band")
