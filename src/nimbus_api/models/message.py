"""One email of one step to one contact, and the attempts to send it that did not deliver.

Message states (transitions only in ``sending.states``):

    queued --lease--> leased --reply 2xx--> sent
                      leased --4xx / network error before the final dot--> deferred(retry_at) --due--> queued
                      leased --5xx for the recipient--> failed
                      leased --suppressed at send time--> suppressed
                      leased --connection lost after the final dot--> unknown   (never retried blindly)
                      leased --lease expired (worker died)--> unknown          (the sweeper; never resent)
    deferred --past the maximum lifetime--> expired
    queued | deferred --the contact replied, complained or bounced hard--> cancelled  (``inbox.effects``)
    sent --a bounce report (DSN) failing the recipient permanently--> bounced       (``inbox.effects``)

A message row exists before any SMTP traffic; ``(enrollment_id, step)`` is unique, so a step is never
queued twice.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step"),
        # What the sender leases: one inbox's due messages, oldest first. Partial: a leased, sent or
        # failed message is not in it, so those state changes add no entry here.
        Index(
            "ix_messages_work",
            "account_id",
            "created_at",
            postgresql_where=text("state IN ('queued', 'deferred')"),
        ),
        # What the sweeper reads every 30 s: leases that expired. Partial, so only messages in flight are
        # in it (an entry at each lease; none at the update that records the outcome), where without it
        # the sweep read the whole table (44 ms at 300,000 messages, and growing with every send).
        Index("ix_messages_leased", "lease_expires_at", postgresql_where=text("state = 'leased'")),
        Index("ix_messages_campaign_state", "campaign_id", "state"),
        # The monthly quota and the workspace's sends (``sent_at >=`` a moment). Partial: no entry at the
        # insert and the lease, where ``sent_at`` is still NULL.
        Index("ix_messages_workspace_sent_at", "workspace_id", "sent_at", postgresql_where=text("sent_at IS NOT NULL")),
        # An inbox's sends of the last 7 days, for its health (``health.recompute``): counted from the index
        # alone. Partial, like the one above: no entry before the message is sent.
        Index("ix_messages_account_sent_at", "account_id", "sent_at", postgresql_where=text("sent_at IS NOT NULL")),
        # An inbox's bounced messages by time: the bounce-burst count of the cooldown (``stages.cooldown``).
        Index("ix_messages_account_bounced", "account_id", "bounced_at", postgresql_where=text("state = 'bounced'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    enrollment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    # The enrollment's workspace, campaign and contact, copied by the dispatcher for scoping and indexes.
    # No foreign keys of their own: the enrollment's (all ON DELETE CASCADE, as is this row's to it)
    # already hold them, and three more checks per insert (each a lookup and a lock on the parent row)
    # were a measurable share of a dispatch's cost (bench/bench_send.py).
    # No query reads messages by workspace_id alone (a workspace's rows go with its enrollments).
    workspace_id: Mapped[uuid.UUID] = mapped_column()
    campaign_id: Mapped[uuid.UUID] = mapped_column()
    contact_id: Mapped[uuid.UUID] = mapped_column()
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("email_accounts.id", ondelete="SET NULL"))
    step: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), default="queued")
    to_email: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    message_id_header: Mapped[str] = mapped_column(String(255), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(255), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    retry_at: Mapped[datetime | None] = mapped_column(default=None)
    budget_day: Mapped[date | None] = mapped_column(Date, default=None)
    """The UTC day whose inbox budget this message holds a send of (None: none held, e.g. a retry moved
    to a later day; the sender reserves that day's budget before sending it)."""
    reply_code: Mapped[int | None] = mapped_column(Integer, default=None)
    reply_enhanced: Mapped[str | None] = mapped_column(String(20), default=None)
    reply_text: Mapped[str | None] = mapped_column(Text, default=None)
    error_code: Mapped[str | None] = mapped_column(String(60), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    bounced_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SendAttempt(Base):
    """An attempt that did not deliver (deferred, failed, bounced, unknown, credential): the history of
    a message's retries and why. The attempt that delivered is the message row itself (``sent_at``,
    ``reply_code``/``reply_enhanced``/``reply_text``, ``attempts`` counts every try): a row per sent
    message here (an insert and two foreign-key checks each) was a measurable share of the sender's
    database work (bench/bench_send.py) and told nothing the message does not."""

    __tablename__ = "send_attempts"
    # An inbox's failed attempts of the last 7 days, for its health (``health.recompute``) and its
    # monitoring figures.
    __table_args__ = (Index("ix_send_attempts_account_started", "account_id", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("email_accounts.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(20))
    reply_code: Mapped[int | None] = mapped_column(Integer, default=None)
    reply_enhanced: Mapped[str | None] = mapped_column(String(20), default=None)
    reply_text: Mapped[str | None] = mapped_column(Text, default=None)
    error_code: Mapped[str | None] = mapped_column(String(60), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AccountDailyUsage(Base):
    """Sends (and step-1 sends) of an inbox in one UTC day; reserved in the same statement as the pick.
    Also the day's bounces and complaints, the numerators of the 7-day rates (``inbox.rates``)."""

    __tablename__ = "account_daily_usage"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    new_contacts: Mapped[int] = mapped_column(Integer, default=0)
    bounces: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Permanent refusals counted this day: 5xx at send time and bounce reports (``inbox.rates``)."""
    complaints: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
