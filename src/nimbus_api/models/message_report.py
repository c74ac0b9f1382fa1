"""Which bounce and complaint reports already acted on a sent message, whatever way they arrived.

A message can be reported twice for the same recipient: by a DSN or feedback-loop mail in the inbox
(``inbox.ingest``) and by the sending service's webhook (``provider_hooks``). The first to arrive inserts
``(message_id, email, kind)`` and acts; the second finds the row and counts nothing. ``source`` says which
way the first came (``inbox`` or ``provider_hook``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow


class MessageReport(Base):
    __tablename__ = "message_reports"

    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
