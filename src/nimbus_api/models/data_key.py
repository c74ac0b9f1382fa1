"""Workspace data keys.

States: ``active`` (encrypts new secrets; one per workspace) -> ``retiring`` (a newer key is active and
secrets are being re-encrypted away from this one; still decrypts) -> ``retired`` (no secret uses it;
its wrapped key material is erased). Transitions happen only in ``credentials.rotation``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class DataKey(Base):
    __tablename__ = "data_keys"
    __table_args__ = (
        Index(
            "uq_data_keys_one_active",
            "workspace_id",
            unique=True,
            postgresql_where=text("state = 'active'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(10), default="active")
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
