"""One inbox's health on one UTC day: the latest recompute of that day, kept for the history charts.

Written set-based by ``health.snapshots`` after each full recompute (an upsert that leaves a row alone when
nothing changed), so a day's row holds its last values and is final once the day is over.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow


class AccountHealthDaily(Base):
    __tablename__ = "account_health_daily"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    overall_score: Mapped[float] = mapped_column()
    reputation_score: Mapped[float] = mapped_column()
    band: Mapped[str] = mapped_column(String(10))
    components: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
