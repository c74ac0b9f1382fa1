"""webhooks: deliveries, attempts, the dispatcher's endpoint state, and the outbox wake-up trigger

Revision ID: 9d3e51c7a2f6
Revises: 5c2f9a7e1b44
Create Date: 2026-12-02 19:40:00.000000+00:00

``webhook_deliveries`` (one event to one endpoint, leased while in flight) and ``webhook_attempts``;
``events.dispatched_at`` (events already fanned out; the events written before this revision count as
dispatched); endpoint columns for failure tracking, round robin and the rate window; the audit log
learns webhook secrets. A statement-level trigger on ``events`` NOTIFYs ``nimbus_webhooks``: delivered
at commit only, so dispatchers wake for committed events alone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9d3e51c7a2f6"
down_revision: str | None = "5c2f9a7e1b44"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A UUIDv7 made in SQL (the fan-out inserts deliveries set-based): the millisecond clock in the
    # first 48 bits of a random UUID, version bits turned from 4 into 7.
    op.execute(
        """
        CREATE FUNCTION nimbus_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
            SELECT encode(
                set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6), 52, 1), 53, 1),
                'hex')::uuid
        $$
        """
    )
    op.add_column("events", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE events SET dispatched_at = created_at")
    op.create_index(
        "ix_events_undispatched", "events", ["id"], unique=False, postgresql_where=sa.text("dispatched_at IS NULL")
    )
    op.execute(
        """
        CREATE FUNCTION nimbus_notify_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('nimbus_webhooks', 'events');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_notify_webhooks AFTER INSERT ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION nimbus_notify_webhooks()"
    )

    op.add_column("webhook_endpoints", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("last_claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("rate_window_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("rate_window_count", sa.Integer(), server_default="0", nullable=False))

    op.alter_column("credential_access_log", "account_id", existing_type=sa.Uuid(), nullable=True)
    op.add_column("credential_access_log", sa.Column("webhook_endpoint_id", sa.Uuid(), nullable=True))
    op.create_index(
        op.f("ix_credential_access_log_webhook_endpoint_id"),
        "credential_access_log",
        ["webhook_endpoint_id"],
        unique=False,
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_id", sa.Uuid(), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("single_attempt", sa.Boolean(), nullable=False),
        sa.Column("replay", sa.Boolean(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error_class", sa.String(length=30), nullable=True),
        sa.Column("final_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_webhook_deliveries_event_id_events"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_webhook_deliveries_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_leased",
        "webhook_deliveries",
        ["endpoint_id", "leased_until"],
        unique=False,
        postgresql_where=sa.text("lease_id IS NOT NULL"),
    )
    op.create_index("ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"], unique=False)
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"], unique=False)
    op.create_index(op.f("ix_webhook_deliveries_workspace_id"), "webhook_deliveries", ["workspace_id"], unique=False)

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error_class", sa.String(length=30), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("will_retry", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_attempts_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_webhook_attempts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        "ix_webhook_attempts_endpoint_id_attempted_at",
        "webhook_attempts",
        ["endpoint_id", "attempted_at"],
        unique=False,
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_credential_access_log_webhook_endpoint_id"), table_name="credential_access_log")
    op.drop_column("credential_access_log", "webhook_endpoint_id")
    op.execute("DELETE FROM credential_access_log WHERE account_id IS NULL")
    op.alter_column("credential_access_log", "account_id", existing_type=sa.Uuid(), nullable=False)
    for column in ("rate_window_count", "rate_window_start", "last_claimed_at", "failing_since", "disabled_at"):
        op.drop_column("webhook_endpoints", column)
    op.execute("DROP TRIGGER events_notify_webhooks ON events")
    op.execute("DROP FUNCTION nimbus_notify_webhooks()")
    op.drop_index("ix_events_undispatched", table_name="events", postgresql_where=sa.text("dispatched_at IS NULL"))
    op.drop_column("events", "dispatched_at")
    op.execute("DROP FUNCTION nimbus_uuid7()")
