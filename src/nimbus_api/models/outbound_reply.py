"""A person's answer to an inbound message, sent through the same inbox (``POST /v1/inbox/{id}/reply``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class OutboundReply(Base):
    __tablename__ = "outbound_replies"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"))
    inbound_message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), index=True
    )
    to_email: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    message_id_header: Mapped[str] = mapped_column(String(255), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(300), default=None)
    references: Mapped[str | None] = mapped_column(Text, default=None)
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text, default=None)
    reply_code: Mapped[int | None] = mapped_column(Integer, default=None)
    reply_text: Mapped[str | None] = mapped_column(Text, default=None)
    actor: Mapped[str] = mapped_column(String(100))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
