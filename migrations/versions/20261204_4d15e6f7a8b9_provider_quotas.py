"""provider quotas: an account's SES region and the send quota read from Amazon SES

Revision ID: 4d15e6f7a8b9
Revises: 6f15a8b9c0d1
Create Date: 2026-12-04 21:00:00.000000+00:00

``email_accounts``: ``ses_region`` (set with the encrypted SES API credentials, credential kind
``ses_api``), the last GetSendQuota figures (``provider_quota_max_24h``, ``_sent_24h``, ``_max_rate``),
when they were read (``provider_quota_read_at``) and last tried (``provider_quota_checked_at``: NULL is
due now), and the last failure (``provider_quota_error_code`` / ``_detail``); a partial index of the
accounts with SES credentials, least recently checked first, for the refresh.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4d15e6f7a8b9"
down_revision: str | None = "6f15a8b9c0d1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("email_accounts", sa.Column("ses_region", sa.String(30), nullable=True))
    op.add_column("email_accounts", sa.Column("provider_quota_max_24h", sa.Float(), nullable=True))
    op.add_column("email_accounts", sa.Column("provider_quota_sent_24h", sa.Float(), nullable=True))
    op.add_column("email_accounts", sa.Column("provider_quota_max_rate", sa.Float(), nullable=True))
    op.add_column("email_accounts", sa.Column("provider_quota_read_at", TS, nullable=True))
    op.add_column("email_accounts", sa.Column("provider_quota_checked_at", TS, nullable=True))
    op.add_column("email_accounts", sa.Column("provider_quota_error_code", sa.String(60), nullable=True))
    op.add_column("email_accounts", sa.Column("provider_quota_error_detail", sa.Text(), nullable=True))
    op.create_index(
        "ix_email_accounts_quota_due",
        "email_accounts",
        [sa.text("provider_quota_checked_at NULLS FIRST")],
        postgresql_where=sa.text("ses_region IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_email_accounts_quota_due", table_name="email_accounts")
    for column in (
        "provider_quota_error_detail",
        "provider_quota_error_code",
        "provider_quota_checked_at",
        "provider_quota_read_at",
        "provider_quota_max_rate",
        "provider_quota_sent_24h",
        "provider_quota_max_24h",
        "ses_region",
    ):
        op.drop_column("email_accounts", column)
