"""messages: no foreign keys of their own for workspace, campaign and contact

Revision ID: 801ec1691684
Revises: 5b1e7c3a9d20
Create Date: 2026-11-24 13:24:49.420660+00:00

The enrollment row (to which every message has a cascading foreign key) holds these three references;
the copies on messages are for scoping and indexes. Dropping their own checks saves three lookups and
three parent-row locks per dispatched message; deleting a workspace, campaign or contact still deletes
its messages through the enrollment.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "801ec1691684"
down_revision: str | None = "5b1e7c3a9d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("fk_messages_workspace_id_workspaces"), "messages", type_="foreignkey")
    op.drop_constraint(op.f("fk_messages_campaign_id_campaigns"), "messages", type_="foreignkey")
    op.drop_constraint(op.f("fk_messages_contact_id_contacts"), "messages", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        op.f("fk_messages_contact_id_contacts"), "messages", "contacts", ["contact_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key(
        op.f("fk_messages_campaign_id_campaigns"), "messages", "campaigns", ["campaign_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key(
        op.f("fk_messages_workspace_id_workspaces"),
        "messages",
        "workspaces",
        ["workspace_id"],
        ["id"],
        ondelete="CASCADE",
    )
