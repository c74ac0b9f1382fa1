"""workspaces: an operator's limit on email accounts per workspace

Revision ID: 4b8e1d2f6a90
Revises: a7e3c9d1f0b2
Create Date: 2026-12-02 08:10:00.000000+00:00

``max_email_accounts`` is set by ``nimbus workspace set-limit``; NULL (every existing workspace) means
the deployment's ``NIMBUS_MAX_ACCOUNTS_PER_WORKSPACE``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4b8e1d2f6a90"
down_revision: str | None = "a7e3c9d1f0b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workspaces", sa.Column("max_email_accounts", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("workspaces", "max_email_accounts")
