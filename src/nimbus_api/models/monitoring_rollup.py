"""How far one inbox's hourly send figures are rolled up (``monitoring_hours``): every complete hour
before ``through`` is there (from the start of the 7-day window)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base


class MonitoringRollup(Base):
    __tablename__ = "monitoring_rollups"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True)
    through: Mapped[datetime] = mapped_column()
