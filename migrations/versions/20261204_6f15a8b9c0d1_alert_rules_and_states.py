"""alerts: workspace alert rules (with their defaults), alert states, and the monitoring read's indexes

Revision ID: 6f15a8b9c0d1
Revises: 5e15f7a8b9c0
Create Date: 2026-12-04 21:00:00.000000+00:00

``alert_rules`` (a workspace's conditions over its inboxes and domains) and ``alert_states`` (one row per
alert: a rule's condition held for one subject, at most one active per pair by a partial unique index).
Every existing workspace gets the default rules, as a new one does at creation (the values below are
``alerts.kinds.DEFAULTS`` as of this revision).

``GET /v1/email-accounts/{id}/monitoring`` counts one inbox's sends and failed attempts over 24 h and
7 d: ``ix_messages_account_sent_at`` (made by the health migration) (partial: no entry until a message is accepted, so a queued or leased
message costs the sender nothing here) and ``ix_send_attempts_account_started``; complete hours are
rolled up per inbox (``monitoring_hours``, how far in ``monitoring_rollups``), so a read counts the rows
of the window's two partial ends only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6f15a8b9c0d1"
down_revision: str | None = "5e15f7a8b9c0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)

# kind, threshold, severity: the defaults every workspace starts with.
_DEFAULTS = (
    ("score_below", 40.0, "warning"),
    ("bounce_rate_above", 5.0, "critical"),
    ("complaint_rate_above", 0.3, "critical"),
    ("sync_lag_above", 3600.0, "warning"),
    ("listed", None, "critical"),
    ("domain_unhealthy", None, "critical"),
)


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("workspace_id", sa.Uuid(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="CASCADE"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_alert_rules_workspace_id", "alert_rules", ["workspace_id"])
    op.create_index("ix_alert_rules_account_id", "alert_rules", ["account_id"])
    op.create_table(
        "alert_states",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("workspace_id", sa.Uuid(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rule_id", sa.Uuid(), sa.ForeignKey("alert_rules.id", ondelete="SET NULL"), nullable=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("subject_type", sa.String(10), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("subject_name", sa.String(320), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_reason", sa.String(20), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index(
        "uq_alert_states_active",
        "alert_states",
        ["rule_id", "subject_id"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_index("ix_alert_states_active_kind", "alert_states", ["kind"], postgresql_where=sa.text("active"))
    op.create_index("ix_alert_states_workspace", "alert_states", ["workspace_id", "id"])
    op.create_index("ix_alert_states_rule_id", "alert_states", ["rule_id"])
    op.create_table(
        "monitoring_hours",
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("hour", TS, primary_key=True),
        sa.Column("outcome", sa.String(20), primary_key=True),
        sa.Column("error_code", sa.String(60), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
    )
    op.create_table(
        "monitoring_rollups",
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("through", TS, nullable=False),
    )
    for kind, threshold, severity in _DEFAULTS:
        op.execute(
            sa.text(
                "INSERT INTO alert_rules (id, workspace_id, kind, threshold, severity, enabled, created_at, updated_at)"
                " SELECT gen_random_uuid(), w.id, :kind, :threshold, :severity, true, now(), now() FROM workspaces w"
            ).bindparams(
                sa.bindparam("kind", kind),
                sa.bindparam("threshold", threshold, type_=sa.Float()),
                sa.bindparam("severity", severity),
            )
        )


def downgrade() -> None:
    op.drop_table("monitoring_rollups")
    op.drop_table("monitoring_hours")
    op.drop_table("alert_states")
    op.drop_table("alert_rules")
