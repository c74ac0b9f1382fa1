"""The sync state of a mailbox: who reads it now (the lease), when next, how it went; and one cursor per folder.

``MailboxSync`` (one row per account with IMAP) states: ``pending`` (never polled) -> ``ok`` (the last poll
succeeded) | ``failing`` (the last polls failed: ``consecutive_failures``, ``last_error_code``; an
authentication failure emits ``account.sync_failed`` once, recorded in ``failure_notified_at``, and the
next success clears both). The lease (``lease_owner``, ``lease_expires_at``) is held by one worker at a
time and renewed while held; an expired lease is anyone's (see ``sync.leases``).

``MailboxFolder`` is the cursor of one folder; its state machine is in ``sync.cursor``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow


class MailboxSync(Base):
    __tablename__ = "mailbox_syncs"
    __table_args__ = (
        # What a claim reads: mailboxes whose lease is free or expired, soonest due first.
        Index("ix_mailbox_syncs_claim", "lease_expires_at"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column()
    status: Mapped[str] = mapped_column(String(10), default="pending")
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    next_poll_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_poll_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error_code: Mapped[str | None] = mapped_column(String(60), default=None)
    last_error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    failure_notified_at: Mapped[datetime | None] = mapped_column(default=None)
    messages_stored: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MailboxFolder(Base):
    __tablename__ = "mailbox_folders"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mailbox_syncs.account_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10), default="initial")
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    uidnext: Mapped[int | None] = mapped_column(BigInteger, default=None)
    resets: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncWorker(Base):
    """A worker process that syncs, and when it last said so (``sync.leases.heartbeat``)."""

    __tablename__ = "sync_workers"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(default=utcnow)
    """Alive until then (its last heartbeat plus its lease period)."""
