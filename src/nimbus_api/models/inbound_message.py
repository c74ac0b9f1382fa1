"""A message read from a synced mailbox (INBOX or Junk), classified, matched, and shown in the inbox.

Identity: ``(account_id, folder, uidvalidity, uid)`` is where the server holds it; ``(account_id,
dedupe_key)`` is what it is (its Message-ID, else a digest of its headers), so the same message seen in
two folders, or again after a UIDVALIDITY change, is stored and acted on once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class InboundMessage(Base):
    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("account_id", "folder", "uidvalidity", "uid"),
        UniqueConstraint("account_id", "dedupe_key"),
        # The unified inbox: a workspace's messages, newest first (ids are UUIDv7: creation order).
        Index("ix_inbound_messages_inbox", "workspace_id", "id"),
        Index("ix_inbound_messages_sent_message", "sent_message_id"),
        # An account's bounces and complaints of the last 7 days (``inbox.rates``).
        Index("ix_inbound_messages_account_kind", "account_id", "kind", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    dedupe_key: Mapped[str] = mapped_column(String(300))
    message_id_header: Mapped[str | None] = mapped_column(String(300), default=None)
    kind: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[list[str]] = mapped_column(JSONB, default=list)
    classification: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    from_address: Mapped[str | None] = mapped_column(String(320), default=None)
    from_name: Mapped[str | None] = mapped_column(String(300), default=None)
    to_addresses: Mapped[str | None] = mapped_column(Text, default=None)
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    date_header: Mapped[datetime | None] = mapped_column(default=None)
    size: Mapped[int] = mapped_column(Integer, default=0)
    truncated: Mapped[bool] = mapped_column(default=False)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    text_body: Mapped[str | None] = mapped_column(Text, default=None)
    html_body: Mapped[str | None] = mapped_column(Text, default=None)
    new_text: Mapped[str | None] = mapped_column(Text, default=None)
    match_method: Mapped[str | None] = mapped_column(String(30), default=None)
    sent_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), default=None
    )
    enrollment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL"), default=None
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), default=None)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"), default=None)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
