"""deliverability: the columns the health, warmup and domain-health work read from each other

Revision ID: 0f15a2c3d4e5
Revises: 3a7c1e9d5b20
Create Date: 2026-12-04 20:30:00.000000+00:00

``domains``: the latest DNS verdict (``dns_status``: unknown | pass | warn | fail) and blocklist verdict
(``blocklist_status``: unknown | clean | listed), when they were checked, and why the domain is paused
(``paused_reason``; ``is_paused`` already says whether). ``email_accounts``: whether the inbox takes part
in warmup and how many warmup messages it has sent in all (stages are earned on it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0f15a2c3d4e5"
down_revision: str | None = "3a7c1e9d5b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("domains", sa.Column("dns_status", sa.String(10), nullable=False, server_default="unknown"))
    op.add_column("domains", sa.Column("blocklist_status", sa.String(10), nullable=False, server_default="unknown"))
    op.add_column("domains", sa.Column("health_checked_at", TS, nullable=True))
    op.add_column("domains", sa.Column("paused_reason", sa.String(60), nullable=True))
    op.add_column(
        "email_accounts", sa.Column("warmup_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("email_accounts", sa.Column("warmup_sent_total", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("email_accounts", "warmup_sent_total")
    op.drop_column("email_accounts", "warmup_enabled")
    op.drop_column("domains", "paused_reason")
    op.drop_column("domains", "health_checked_at")
    op.drop_column("domains", "blocklist_status")
    op.drop_column("domains", "dns_status")
