"""oauth accounts: an account's auth method, OAuth connect attempts and grants

Revision ID: 7a16b1c2d3e4
Revises: 4d15e6f7a8b9
Create Date: 2026-12-06 21:00:00.000000+00:00

``email_accounts.auth_method`` (``password`` for every existing account, or ``oauth2``);
``oauth_attempts`` (one per authorize URL: the hashed state, the sealed PKCE verifier, where the browser
goes back to, and the outcome) and ``oauth_grants`` (an OAuth account's provider, granted scope, access
token expiry and token version; the tokens are credentials of kinds ``oauth_access_token`` and
``oauth_refresh_token``), indexed by expiry for the refresh cron.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7a16b1c2d3e4"
down_revision: str | None = "4d15e6f7a8b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "email_accounts",
        sa.Column("auth_method", sa.String(10), nullable=False, server_default="password"),
    )
    op.create_table(
        "oauth_attempts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("workspace_id", sa.Uuid(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("data_key_id", sa.Uuid(), sa.ForeignKey("data_keys.id"), nullable=False),
        sa.Column("verifier_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("frontend_url", sa.String(2000), nullable=False),
        sa.Column("login_hint", sa.String(320), nullable=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("email_accounts.id", ondelete="SET NULL"), nullable=True),
        sa.Column("reauthorize", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("error_code", sa.String(60), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("verification", postgresql.JSONB(), nullable=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("state_hash", name="uq_oauth_attempts_state_hash"),
    )
    op.create_index("ix_oauth_attempts_workspace_id_id", "oauth_attempts", ["workspace_id", "id"])
    op.create_index("ix_oauth_attempts_data_key_id", "oauth_attempts", ["data_key_id"])
    op.create_index("ix_oauth_attempts_account_id", "oauth_attempts", ["account_id"])
    op.create_table(
        "oauth_grants",
        sa.Column(
            "account_id",
            sa.Uuid(),
            sa.ForeignKey("email_accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("workspace_id", sa.Uuid(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("access_expires_at", TS, nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("refreshed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_oauth_grants_workspace_id", "oauth_grants", ["workspace_id"])
    op.create_index("ix_oauth_grants_access_expires_at", "oauth_grants", ["access_expires_at"])


def downgrade() -> None:
    op.drop_table("oauth_grants")
    op.drop_table("oauth_attempts")
    op.drop_column("email_accounts", "auth_method")
