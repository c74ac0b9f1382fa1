"""inbound: mailbox leases and status, folder cursors, inbound messages, and what they change

Revision ID: 3a7c1e9d5b20
Revises: 9d3e51c7a2f6
Create Date: 2026-12-03 16:00:00.000000+00:00

``mailbox_syncs`` (one row per account with IMAP: lease, schedule, status), ``sync_workers`` (who is
alive to share the mailboxes with), ``mailbox_folders`` (the
cursor per folder) and ``inbound_messages``. Existing accounts with IMAP get their sync row, due at once
with a spread over their interval (the worker spreads new rows the same way).

What inbound mail changes: ``campaigns.stop_on_auto_reply``; per pool member the bounce guard's state
(``campaign_accounts.disabled_at``, reason, figures, ``counts_since``); ``enrollments.replied_at`` and
``auto_replied_at``; ``messages.bounced_at`` (the bounce report's time; the state says ``bounced``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3a7c1e9d5b20"
down_revision: str | None = "9d3e51c7a2f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mailbox_syncs",
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("next_poll_at", TS, nullable=False),
        sa.Column("last_poll_at", TS, nullable=True),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_error_code", sa.String(60), nullable=True),
        sa.Column("last_error_detail", sa.Text(), nullable=True),
        sa.Column("failing_since", TS, nullable=True),
        sa.Column("failure_notified_at", TS, nullable=True),
        sa.Column("messages_stored", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_mailbox_syncs_claim", "mailbox_syncs", ["lease_expires_at"])
    op.create_table(
        "sync_workers",
        sa.Column("owner", sa.String(100), primary_key=True),
        sa.Column("seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "mailbox_folders",
        sa.Column(
            "account_id", sa.Uuid(), sa.ForeignKey("mailbox_syncs.account_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("uidnext", sa.BigInteger(), nullable=True),
        sa.Column("resets", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("workspace_id", sa.Uuid(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("dedupe_key", sa.String(300), nullable=False),
        sa.Column("message_id_header", sa.String(300), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reasons", postgresql.JSONB(), nullable=False),
        sa.Column("classification", postgresql.JSONB(), nullable=False),
        sa.Column("from_address", sa.String(320), nullable=True),
        sa.Column("from_name", sa.String(300), nullable=True),
        sa.Column("to_addresses", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("date_header", TS, nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("new_text", sa.Text(), nullable=True),
        sa.Column("match_method", sa.String(30), nullable=True),
        sa.Column("sent_message_id", sa.Uuid(), sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
        sa.Column("enrollment_id", sa.Uuid(), sa.ForeignKey("enrollments.id", ondelete="SET NULL"), nullable=True),
        sa.Column("contact_id", sa.Uuid(), sa.ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True),
        sa.Column("campaign_id", sa.Uuid(), sa.ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True),
        sa.Column("read_at", TS, nullable=True),
        sa.Column("archived_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint(
            "account_id",
            "folder",
            "uidvalidity",
            "uid",
            name=op.f("uq_inbound_messages_account_id_folder_uidvalidity_uid"),
        ),
        sa.UniqueConstraint("account_id", "dedupe_key", name=op.f("uq_inbound_messages_account_id_dedupe_key")),
    )
    op.create_index("ix_inbound_messages_inbox", "inbound_messages", ["workspace_id", "id"])
    op.create_table(
        "outbound_replies",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("workspace_id", sa.Uuid(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "inbound_message_id",
            sa.Uuid(),
            sa.ForeignKey("inbound_messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("to_email", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message_id_header", sa.String(255), nullable=False),
        sa.Column("in_reply_to", sa.String(300), nullable=True),
        sa.Column("references", sa.Text(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.UniqueConstraint("message_id_header", name=op.f("uq_outbound_replies_message_id_header")),
    )
    op.create_index("ix_outbound_replies_workspace_id", "outbound_replies", ["workspace_id"])
    op.create_index("ix_outbound_replies_inbound_message_id", "outbound_replies", ["inbound_message_id"])
    op.create_index("ix_inbound_messages_sent_message", "inbound_messages", ["sent_message_id"])
    op.create_index("ix_inbound_messages_account_kind", "inbound_messages", ["account_id", "kind", "created_at"])
    op.add_column("campaigns", sa.Column("stop_on_auto_reply", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("campaign_accounts", sa.Column("disabled_at", TS, nullable=True))
    op.add_column("campaign_accounts", sa.Column("disabled_reason", sa.String(40), nullable=True))
    op.add_column("campaign_accounts", sa.Column("disabled_detail", postgresql.JSONB(), nullable=True))
    op.add_column("campaign_accounts", sa.Column("counts_since", TS, nullable=True))
    op.add_column("enrollments", sa.Column("replied_at", TS, nullable=True))
    op.add_column("enrollments", sa.Column("auto_replied_at", TS, nullable=True))
    op.add_column("messages", sa.Column("bounced_at", TS, nullable=True))
    op.add_column("account_daily_usage", sa.Column("bounces", sa.Integer(), server_default="0", nullable=False))
    op.add_column("account_daily_usage", sa.Column("complaints", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        """
        INSERT INTO mailbox_syncs (account_id, workspace_id, status, next_poll_at, consecutive_failures,
                                   messages_stored, created_at, updated_at)
        SELECT id, workspace_id, 'pending',
               now() + make_interval(secs => (abs(hashtext(id::text)) % greatest(sync_interval_seconds, 1))),
               0, 0, now(), now()
        FROM email_accounts WHERE imap_host IS NOT NULL
        """
    )


def downgrade() -> None:
    op.drop_table("outbound_replies")
    op.drop_column("account_daily_usage", "complaints")
    op.drop_column("account_daily_usage", "bounces")
    op.drop_column("messages", "bounced_at")
    op.drop_column("enrollments", "auto_replied_at")
    op.drop_column("enrollments", "replied_at")
    for column in ("counts_since", "disabled_detail", "disabled_reason", "disabled_at"):
        op.drop_column("campaign_accounts", column)
    op.drop_column("campaigns", "stop_on_auto_reply")
    op.drop_table("inbound_messages")
    op.drop_table("mailbox_folders")
    op.drop_table("mailbox_syncs")
    op.drop_table("sync_workers")
