from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class CredentialAccess(Base):
    """One decrypt of a stored secret (a mailbox's, or a webhook endpoint's signing secret): who, why,
    when. Kept after the account or endpoint is deleted; exactly one of the two subject ids is set."""

    __tablename__ = "credential_access_log"
    __table_args__ = (Index("ix_credential_access_log_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    webhook_endpoint_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    credential_kind: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
