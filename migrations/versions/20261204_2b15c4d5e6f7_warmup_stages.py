"""warmup stages: a person's stage override, and the index the cooldown's bounce-burst count reads

Revision ID: 2b15c4d5e6f7
Revises: 1a15b3c4d5e6
Create Date: 2026-12-04 21:00:00.000000+00:00

``email_accounts.stage_override``: while set, the platform does not change ``current_stage``
(``stages.service``). Until now only a person moved a stage (PATCH ``current_stage``), so every inbox
whose stage is not 0 was set by a person: those keep their stage as an override, instead of being
recomputed from warmup sends they never made here.

``ix_messages_account_bounced``: an inbox's bounced messages by time (partial: only bounced ones), what
``stages.cooldown`` counts after each hard bounce.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2b15c4d5e6f7"
down_revision: str | None = "1a15b3c4d5e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("email_accounts", sa.Column("stage_override", sa.Integer(), nullable=True))
    op.execute("UPDATE email_accounts SET stage_override = current_stage WHERE current_stage <> 0")
    op.create_index(
        "ix_messages_account_bounced",
        "messages",
        ["account_id", "bounced_at"],
        postgresql_where=sa.text("state = 'bounced'"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_account_bounced", table_name="messages")
    op.drop_column("email_accounts", "stage_override")
