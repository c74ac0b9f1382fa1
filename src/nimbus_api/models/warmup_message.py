"""One warmup message between two warming inboxes: planned, sent, received, acted on.

The states and who moves them are written down in ``nimbus_api.warmup`` (the package docstring). The
sending side is ``sender_id``'s; the receiving side (``received_at`` onwards) is written by the sync of
``recipient_id`` and by its receiver. The two inboxes may belong to different workspaces (the platform
pool): each side's API shows counts of its own rows only, never the other inbox.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class WarmupMessage(Base):
    __tablename__ = "warmup_messages"
    __table_args__ = (
        CheckConstraint("state IN ('planned', 'sending', 'sent', 'failed', 'unknown', 'skipped')", name="state_known"),
        CheckConstraint("landed IS NULL OR landed IN ('inbox', 'junk')", name="landed_known"),
        # The planner's idempotence: slot n of an inbox's day is planned once, whoever plans it (and the
        # index of an inbox's day: the daily count).
        UniqueConstraint("sender_id", "day", "slot"),
        # A message is answered at most once.
        UniqueConstraint("parent_id"),
        Index("ix_warmup_messages_recipient", "recipient_id", "received_at"),
        Index("ix_warmup_messages_due", "send_at", postgresql_where=text("state IN ('planned', 'sending')")),
        Index(
            "ix_warmup_messages_unhandled",
            "recipient_id",
            postgresql_where=text("received_at IS NOT NULL AND handled_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    sender_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"))
    recipient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"))
    #: the message this one answers (a reply), else NULL (a thread's first message)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("warmup_messages.id", ondelete="SET NULL"), default=None
    )
    #: the sender's UTC day this message counts in (its ``warmup_daily_limit``)
    day: Mapped[date] = mapped_column(Date)
    #: the planner's slot of that day (NULL for replies)
    slot: Mapped[int | None] = mapped_column(Integer, default=None)
    depth: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the phrase bank's seed: the text is rebuilt from it, never stored
    seed: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str] = mapped_column(String(300))
    message_id_header: Mapped[str] = mapped_column(String(300), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(300), default=None)
    references: Mapped[str | None] = mapped_column(Text, default=None)

    state: Mapped[str] = mapped_column(String(12), default="planned", server_default="planned")
    send_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
    reply_code: Mapped[int | None] = mapped_column(Integer, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)

    received_at: Mapped[datetime | None] = mapped_column(default=None)
    #: where it landed at the recipient: ``inbox`` or ``junk``
    landed: Mapped[str | None] = mapped_column(String(10), default=None)
    handled_at: Mapped[datetime | None] = mapped_column(default=None)
    rescued: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    flagged: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    replied: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
