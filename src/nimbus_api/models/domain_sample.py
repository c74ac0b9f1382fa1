"""A message the domain really sent, as a receiver got it: what DMARC alignment is judged on.

One row per domain, replaced by each newer capture: the connect-time roundtrip's test message (read
over IMAP before it is deleted) or the latest message of an inbox's Sent folder. ``raw`` is the whole
message (headers and body: DKIM's body hash needs the body), capped at ``MAX_SAMPLE_BYTES``; it is our
own test message or a sent message of the domain, never a credential. ``headers`` holds the fields
alignment reads (Received chain, DKIM-Signature, From, Authentication-Results, Return-Path) for
display.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow

MAX_SAMPLE_BYTES = 256 * 1024


class DomainSample(Base):
    __tablename__ = "domain_samples"

    domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("email_accounts.id", ondelete="SET NULL"), index=True, default=None
    )
    source: Mapped[str] = mapped_column(String(10))  # roundtrip | sent
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    captured_at: Mapped[datetime] = mapped_column(default=utcnow)
