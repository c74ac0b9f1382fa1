"""email_accounts: one rotation index (workspace, last_sent_at NULLS FIRST, id)

Revision ID: 6c2e8b4d7a13
Revises: 3f9a7c2e51d4
Create Date: 2026-11-24 16:00:00.000000+00:00

A pick read every inbox of the pool and sorted them by ``last_sent_at``; with the workspace's inboxes
indexed in rotation order it walks them from the least recently used and stops at the first eligible
ones (``sending.rotation``). The pick's stamp (the newest ``last_sent_at``, now per workspace) is read
from the back of the same index. It replaces the index on ``last_sent_at`` alone and the one on
``workspace_id`` (its leading column), so a pick's update still writes as many index entries as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6c2e8b4d7a13"
down_revision: str | None = "3f9a7c2e51d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_email_accounts_rotation",
        "email_accounts",
        ["workspace_id", sa.text("last_sent_at NULLS FIRST"), "id"],
        unique=False,
    )
    op.drop_index(op.f("ix_email_accounts_last_sent_at"), table_name="email_accounts")
    op.drop_index(op.f("ix_email_accounts_workspace_id"), table_name="email_accounts")


def downgrade() -> None:
    op.create_index(op.f("ix_email_accounts_workspace_id"), "email_accounts", ["workspace_id"], unique=False)
    op.create_index(op.f("ix_email_accounts_last_sent_at"), "email_accounts", ["last_sent_at"], unique=False)
    op.drop_index("ix_email_accounts_rotation", table_name="email_accounts")
