"""provider hooks: sending services' bounce and complaint webhooks, and which reports acted on a message

Revision ID: 9c16d3e4f5a6
Revises: 8b16c2d3e4f5
Create Date: 2026-12-06 21:00:00.000000+00:00

``provider_hooks`` (a workspace's hook per provider: the SHA-256 of its URL token, unique, and what its
signature scheme needs), ``provider_hook_events`` (one row per accepted notification, unique per hook and
provider event id: replays act once) and ``message_reports`` (the first bounce or complaint report for a
message and recipient, whether it came by mail or by webhook: the second counts nothing).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c16d3e4f5a6"
down_revision: str | None = "8b16c2d3e4f5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "provider_hooks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("topic_arn", sa.String(300), nullable=True),
        sa.Column("basic_username", sa.String(200), nullable=True),
        sa.Column("basic_password_hash", sa.String(300), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("data_key_id", sa.Uuid(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("subscription_confirmed_at", TS, nullable=True),
        sa.Column("last_received_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_provider_hooks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["data_key_id"], ["data_keys.id"], name=op.f("fk_provider_hooks_data_key_id_data_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_hooks")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_provider_hooks_token_hash")),
    )
    op.create_index("ix_provider_hooks_workspace_id_id", "provider_hooks", ["workspace_id", "id"])
    op.create_index(op.f("ix_provider_hooks_data_key_id"), "provider_hooks", ["data_key_id"])
    op.create_table(
        "provider_hook_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("hook_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["hook_id"],
            ["provider_hooks.id"],
            name=op.f("fk_provider_hook_events_hook_id_provider_hooks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_provider_hook_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_hook_events")),
        sa.UniqueConstraint("hook_id", "event_id", name=op.f("uq_provider_hook_events_hook_id_event_id")),
    )
    op.create_index(op.f("ix_provider_hook_events_workspace_id"), "provider_hook_events", ["workspace_id"])
    op.create_table(
        "message_reports",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_message_reports_message_id_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("message_id", "email", "kind", name=op.f("pk_message_reports")),
    )


def downgrade() -> None:
    op.drop_table("message_reports")
    op.drop_index(op.f("ix_provider_hook_events_workspace_id"), table_name="provider_hook_events")
    op.drop_table("provider_hook_events")
    op.drop_index(op.f("ix_provider_hooks_data_key_id"), table_name="provider_hooks")
    op.drop_index("ix_provider_hooks_workspace_id_id", table_name="provider_hooks")
    op.drop_table("provider_hooks")
