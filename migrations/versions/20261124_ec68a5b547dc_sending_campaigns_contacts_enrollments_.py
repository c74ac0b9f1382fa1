"""sending: campaigns, contacts, enrollments, messages

Revision ID: ec68a5b547dc
Revises: 105125d2a6f2
Create Date: 2026-11-24 08:07:38.819620+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "ec68a5b547dc"
down_revision: str | None = "105125d2a6f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("paused_reason", sa.String(length=200), nullable=True),
        sa.Column("min_health_score", sa.Float(), nullable=False),
        sa.Column("bounce_rate_threshold", sa.Float(), nullable=False),
        sa.Column("verify_email_mx", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("send_days", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("send_start", sa.Time(), nullable=False),
        sa.Column("send_end", sa.Time(), nullable=False),
        sa.Column("randomize_delay_min_seconds", sa.Integer(), nullable=True),
        sa.Column("randomize_delay_max_seconds", sa.Integer(), nullable=True),
        sa.Column("exhausted_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_campaigns_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(op.f("ix_campaigns_workspace_id"), "campaigns", ["workspace_id"], unique=False)
    op.create_table(
        "contacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("company", sa.String(length=200), nullable=True),
        sa.Column("fields", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_contacts_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    op.create_index(op.f("ix_contacts_workspace_id"), "contacts", ["workspace_id"], unique=False)
    op.create_index("uq_contacts_workspace_email", "contacts", ["workspace_id", sa.text("lower(email)")], unique=True)
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_suppressions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    op.create_index(op.f("ix_suppressions_workspace_id"), "suppressions", ["workspace_id"], unique=False)
    op.create_index(
        "uq_suppressions_workspace_email", "suppressions", ["workspace_id", sa.text("lower(email)")], unique=True
    )
    op.create_table(
        "campaign_steps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("delay_seconds", sa.Integer(), nullable=False),
        sa.Column("subject_template", sa.Text(), nullable=False),
        sa.Column("text_template", sa.Text(), nullable=False),
        sa.Column("html_template", sa.Text(), nullable=True),
        sa.Column("threaded", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_steps_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_steps")),
        sa.UniqueConstraint("campaign_id", "position", name=op.f("uq_campaign_steps_campaign_id_position")),
    )
    op.create_index(op.f("ix_campaign_steps_campaign_id"), "campaign_steps", ["campaign_id"], unique=False)
    op.create_table(
        "account_daily_usage",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("new_contacts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_account_daily_usage_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_account_daily_usage")),
    )
    op.create_table(
        "campaign_accounts",
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_campaign_accounts_account_id_email_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_accounts_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "account_id", name=op.f("pk_campaign_accounts")),
    )
    op.create_index(op.f("ix_campaign_accounts_account_id"), "campaign_accounts", ["account_id"], unique=False)
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("next_step", sa.Integer(), nullable=False),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("stop_reason", sa.String(length=200), nullable=True),
        sa.Column("unsubscribe_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_enrollments_account_id_email_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_enrollments_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_enrollments_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_enrollments_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint("campaign_id", "contact_id", name=op.f("uq_enrollments_campaign_id_contact_id")),
        sa.UniqueConstraint("unsubscribe_token", name=op.f("uq_enrollments_unsubscribe_token")),
    )
    op.create_index(op.f("ix_enrollments_account_id"), "enrollments", ["account_id"], unique=False)
    op.create_index(op.f("ix_enrollments_campaign_id"), "enrollments", ["campaign_id"], unique=False)
    op.create_index(op.f("ix_enrollments_contact_id"), "enrollments", ["contact_id"], unique=False)
    op.create_index("ix_enrollments_due", "enrollments", ["status", "next_send_at"], unique=False)
    op.create_index(op.f("ix_enrollments_workspace_id"), "enrollments", ["workspace_id"], unique=False)
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("enrollment_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("to_email", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message_id_header", sa.String(length=255), nullable=False),
        sa.Column("in_reply_to", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("reply_enhanced", sa.String(length=20), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=60), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_messages_account_id_email_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_messages_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_messages_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_messages_enrollment_id_enrollments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_messages_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("enrollment_id", "step", name=op.f("uq_messages_enrollment_id_step")),
        sa.UniqueConstraint("message_id_header", name=op.f("uq_messages_message_id_header")),
    )
    op.create_index("ix_messages_campaign_state", "messages", ["campaign_id", "state"], unique=False)
    op.create_index("ix_messages_work", "messages", ["account_id", "state", "retry_at"], unique=False)
    op.create_index(op.f("ix_messages_workspace_id"), "messages", ["workspace_id"], unique=False)
    op.create_table(
        "send_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("reply_enhanced", sa.String(length=20), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=60), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_send_attempts_account_id_email_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_send_attempts_message_id_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_attempts")),
    )
    op.create_index(op.f("ix_send_attempts_message_id"), "send_attempts", ["message_id"], unique=False)
    op.add_column("email_accounts", sa.Column("daily_new_contacts_limit", sa.Integer(), nullable=True))
    op.add_column("email_accounts", sa.Column("max_connections", sa.Integer(), server_default="1", nullable=False))
    op.add_column(
        "email_accounts", sa.Column("min_send_interval_seconds", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("email_accounts", sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("workspaces", sa.Column("monthly_send_quota", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("workspaces", "monthly_send_quota")
    op.drop_column("email_accounts", "last_sent_at")
    op.drop_column("email_accounts", "min_send_interval_seconds")
    op.drop_column("email_accounts", "max_connections")
    op.drop_column("email_accounts", "daily_new_contacts_limit")
    op.drop_index(op.f("ix_send_attempts_message_id"), table_name="send_attempts")
    op.drop_table("send_attempts")
    op.drop_index(op.f("ix_messages_workspace_id"), table_name="messages")
    op.drop_index("ix_messages_work", table_name="messages")
    op.drop_index("ix_messages_campaign_state", table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_enrollments_workspace_id"), table_name="enrollments")
    op.drop_index("ix_enrollments_due", table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_contact_id"), table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_campaign_id"), table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_account_id"), table_name="enrollments")
    op.drop_table("enrollments")
    op.drop_index(op.f("ix_campaign_accounts_account_id"), table_name="campaign_accounts")
    op.drop_table("campaign_accounts")
    op.drop_table("account_daily_usage")
    op.drop_index(op.f("ix_campaign_steps_campaign_id"), table_name="campaign_steps")
    op.drop_table("campaign_steps")
    op.drop_index("uq_suppressions_workspace_email", table_name="suppressions")
    op.drop_index(op.f("ix_suppressions_workspace_id"), table_name="suppressions")
    op.drop_table("suppressions")
    op.drop_index("uq_contacts_workspace_email", table_name="contacts")
    op.drop_index(op.f("ix_contacts_workspace_id"), table_name="contacts")
    op.drop_table("contacts")
    op.drop_index(op.f("ix_campaigns_workspace_id"), table_name="campaigns")
    op.drop_table("campaigns")
