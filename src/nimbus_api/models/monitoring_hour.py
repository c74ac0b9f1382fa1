"""One inbox's send figures of one complete UTC hour, by outcome: the monitoring read's rollup.

``outcome`` is ``accepted`` (messages whose ``sent_at`` is in the hour) or a ``send_attempts`` outcome
(attempts started in the hour), with the attempt's ``error_code`` ('' for none). Rows are written by
``monitoring.rollup`` for hours that ended long enough ago that no more rows can land in them, and kept
for the 7-day window only."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base


class MonitoringHour(Base):
    __tablename__ = "monitoring_hours"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    error_code: Mapped[str] = mapped_column(String(60), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
