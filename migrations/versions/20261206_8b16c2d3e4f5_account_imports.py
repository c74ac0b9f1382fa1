"""account imports: fleet uploads and their rows

Revision ID: 8b16c2d3e4f5
Revises: 7a16b1c2d3e4
Create Date: 2026-12-06 21:00:00.000000+00:00

``account_imports`` (one upload of up to 1,000 mailboxes) and ``account_import_rows`` (one mailbox each,
its passwords sealed under the workspace's data key until the row is final). The partial index on the
open rows is what the runner and the resume cron read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "8b16c2d3e4f5"
down_revision: str | None = "7a16b1c2d3e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "account_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("runner_lease_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_account_imports_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_imports")),
    )
    op.create_index("ix_account_imports_workspace_id_id", "account_imports", ["workspace_id", "id"])
    op.create_table(
        "account_import_rows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("code", sa.String(80), nullable=True),
        sa.Column("field", sa.String(100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("hint", sa.Text(), nullable=True),
        sa.Column("smtp_host", sa.String(253), nullable=True),
        sa.Column("imap_host", sa.String(253), nullable=True),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("data_key_id", sa.Uuid(), nullable=True),
        sa.Column("smtp_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("imap_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["account_imports.id"],
            name=op.f("fk_account_import_rows_import_id_account_imports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_account_import_rows_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["data_key_id"], ["data_keys.id"], name=op.f("fk_account_import_rows_data_key_id_data_keys")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["email_accounts.id"],
            name=op.f("fk_account_import_rows_account_id_email_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_import_rows")),
    )
    op.create_index(
        op.f("ix_account_import_rows_workspace_id"), "account_import_rows", ["workspace_id"], unique=False
    )
    op.create_index("ix_account_import_rows_import_id_row", "account_import_rows", ["import_id", "row_number"])
    op.create_index(
        "ix_account_import_rows_open",
        "account_import_rows",
        ["import_id", "state"],
        postgresql_where=sa.text("state IN ('pending', 'verifying')"),
    )


def downgrade() -> None:
    op.drop_index("ix_account_import_rows_open", table_name="account_import_rows")
    op.drop_index("ix_account_import_rows_import_id_row", table_name="account_import_rows")
    op.drop_index(op.f("ix_account_import_rows_workspace_id"), table_name="account_import_rows")
    op.drop_table("account_import_rows")
    op.drop_index("ix_account_imports_workspace_id_id", table_name="account_imports")
    op.drop_table("account_imports")
