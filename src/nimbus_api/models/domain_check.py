"""The latest result of each domain-health check of a sending domain, one row per (domain, record).

``record`` is one of ``mx``, ``spf``, ``dkim``, ``dmarc`` (the connect-time DNS checks, re-run),
``alignment`` (DMARC alignment of a real message) and ``blocklists``. ``status`` is ``pass``, ``warn``,
``fail`` or ``unknown`` (DNS did not answer, nothing to read); ``code`` the failure's stable code;
``detail`` what the check found (JSON). ``changed_at`` is when ``status`` last changed, and
``previous_status`` what it was before: enough history to say "failing since" without a history table.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class DomainCheck(Base):
    __tablename__ = "domain_checks"
    __table_args__ = (UniqueConstraint("domain_id", "record"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    record: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10))
    code: Mapped[str | None] = mapped_column(String(60), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    previous_status: Mapped[str | None] = mapped_column(String(10), default=None)
