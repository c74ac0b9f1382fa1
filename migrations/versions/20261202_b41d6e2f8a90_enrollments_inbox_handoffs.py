"""enrollments: how often a send paused its inbox and was handed to another one

Revision ID: b41d6e2f8a90
Revises: 4b8e1d2f6a90
Create Date: 2026-12-02 08:30:00.000000+00:00

A send whose failure paused an inbox is handed to another inbox of the pool at most once; the count lives
on the enrollment, because the handed-back message row is deleted and the dispatcher queues a new one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b41d6e2f8a90"
down_revision: str | None = "4b8e1d2f6a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL 11+ adds the column without rewriting the table.
    op.add_column("enrollments", sa.Column("inbox_handoffs", sa.Integer(), server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    op.drop_column("enrollments", "inbox_handoffs")
