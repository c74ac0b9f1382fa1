from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class Domain(Base):
    """A sending domain, shared by every account of the workspace on it (domain health lives here)."""

    __tablename__ = "domains"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(253))
    is_paused: Mapped[bool] = mapped_column(default=False)
    #: why ``is_paused`` is set (a domain-wide problem the last check found), ``None`` when not paused
    paused_reason: Mapped[str | None] = mapped_column(String(60), default=None)
    #: the latest DNS verdict over MX, SPF, DKIM and DMARC: unknown | pass | warn | fail
    dns_status: Mapped[str] = mapped_column(String(10), default="unknown", server_default="unknown")
    #: the latest blocklist verdict over the domain and its sending IPs: unknown | clean | listed
    blocklist_status: Mapped[str] = mapped_column(String(10), default="unknown", server_default="unknown")
    health_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
