"""verification: plaintext auth opt-in, last verification, lockout

Revision ID: 105125d2a6f2
Revises: c8fd29d39e70
Create Date: 2026-11-24 07:15:35.543414+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "105125d2a6f2"
down_revision: str | None = "c8fd29d39e70"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "email_accounts",
        sa.Column("smtp_allow_plaintext_auth", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "email_accounts",
        sa.Column("imap_allow_plaintext_auth", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "email_accounts", sa.Column("last_verification", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column("email_accounts", sa.Column("last_verified_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("email_accounts", sa.Column("verification_locked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("email_accounts", sa.Column("credentials_version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    op.drop_column("email_accounts", "credentials_version")
    op.drop_column("email_accounts", "verification_locked_at")
    op.drop_column("email_accounts", "last_verified_at")
    op.drop_column("email_accounts", "last_verification")
    op.drop_column("email_accounts", "imap_allow_plaintext_auth")
    op.drop_column("email_accounts", "smtp_allow_plaintext_auth")
