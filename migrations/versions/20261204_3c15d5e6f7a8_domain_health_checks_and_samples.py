"""domain health: the latest result per check of each domain, and the message alignment is judged on

Revision ID: 3c15d5e6f7a8
Revises: 2b15c4d5e6f7
Create Date: 2026-12-04 21:00:00.000000+00:00

``domain_checks``: one row per (domain, record) with mx, spf, dkim, dmarc, alignment and blocklists,
each with its status, code, detail and times. ``domain_samples``: one captured message per domain
(the roundtrip test message or the latest sent one), whole, for DKIM verification.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3c15d5e6f7a8"
down_revision: str | None = "2b15c4d5e6f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "domain_checks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("domain_id", sa.Uuid(), nullable=False),
        sa.Column("record", sa.String(20), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("code", sa.String(60), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("previous_status", sa.String(10), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], name=op.f("fk_domain_checks_domain_id_domains"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_checks")),
        sa.UniqueConstraint("domain_id", "record", name=op.f("uq_domain_checks_domain_id_record")),
    )
    op.create_table(
        "domain_samples",
        sa.Column("domain_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("captured_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], name=op.f("fk_domain_samples_domain_id_domains"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_domain_samples_account_id_email_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("domain_id", name=op.f("pk_domain_samples")),
    )
    op.create_index(op.f("ix_domain_samples_account_id"), "domain_samples", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_domain_samples_account_id"), table_name="domain_samples")
    op.drop_table("domain_samples")
    op.drop_table("domain_checks")
