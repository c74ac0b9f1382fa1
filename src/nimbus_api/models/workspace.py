from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class Workspace(Base):
    """A tenant. Every other row belongs to exactly one workspace."""

    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    monthly_send_quota: Mapped[int | None] = mapped_column(default=None)
    max_email_accounts: Mapped[int | None] = mapped_column(default=None)
    """The operator's limit on this workspace's email accounts (``nimbus workspace set-limit``); None:
    ``NIMBUS_MAX_ACCOUNTS_PER_WORKSPACE``."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
