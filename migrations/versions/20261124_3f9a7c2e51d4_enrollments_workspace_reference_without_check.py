"""enrollments: workspace reference without a foreign key or index of its own

Revision ID: 3f9a7c2e51d4
Revises: 801ec1691684
Create Date: 2026-11-24 15:30:00.000000+00:00

An enrollment's campaign and contact (both foreign keys with ON DELETE CASCADE, and both cascading from
their workspace) already delete it with its workspace; no query reads enrollments by workspace alone.
The workspace foreign key's check at every enrollment and its index, which took an entry at each of the
two updates a sent message makes to its enrollment, are dropped.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3f9a7c2e51d4"
down_revision: str | None = "801ec1691684"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("fk_enrollments_workspace_id_workspaces"), "enrollments", type_="foreignkey")
    op.drop_index(op.f("ix_enrollments_workspace_id"), table_name="enrollments")


def downgrade() -> None:
    op.create_index(op.f("ix_enrollments_workspace_id"), "enrollments", ["workspace_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_enrollments_workspace_id_workspaces"),
        "enrollments",
        "workspaces",
        ["workspace_id"],
        ["id"],
        ondelete="CASCADE",
    )
