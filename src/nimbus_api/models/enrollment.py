"""A contact's way through a campaign's steps.

States: ``active`` (a step is due at ``next_send_at``, or its message is in flight) -> ``completed``
(every step sent) | ``replied`` (the contact answered: ``inbox.effects``; also from ``completed``) |
``stopped`` (suppressed, unsubscribed, complained, an auto-reply with ``stop_on_auto_reply``, paused by a
person) | ``bounced``
(hard bounce, or the MX check at dispatch failed) | ``failed`` (a step's message failed permanently).
``account_id`` is the inbox that sent step 1: follow-ups go through it, or wait for it. If that inbox is
deleted, what it had not sent goes back to the dispatcher (``sending.sweeper.hand_back_orphans``) and the
inbox the next send is placed on carries the thread from then on.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        # What dispatch reads: one campaign's active enrollments by due time. Partial, so an enrollment in
        # flight (no next_send_at) or finished leaves the index and costs no entry on its later updates.
        Index(
            "ix_enrollments_due",
            "campaign_id",
            "next_send_at",
            postgresql_where=text("status = 'active' AND next_send_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # The campaign's and the contact's workspace, copied for scoping: no foreign key or index of its own
    # (both parents cascade from the workspace, and nothing reads enrollments by workspace alone), which
    # spares an index entry at each of the two updates every sent message makes here.
    workspace_id: Mapped[uuid.UUID] = mapped_column()
    # Indexed by uq_enrollments_campaign_id_contact_id (campaign_id first).
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="active")
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    next_send_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("email_accounts.id", ondelete="SET NULL"), default=None, index=True
    )
    stop_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    replied_at: Mapped[datetime | None] = mapped_column(default=None)
    auto_replied_at: Mapped[datetime | None] = mapped_column(default=None)
    inbox_handoffs: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """How often a send of this enrollment paused its inbox and was handed to another one
    (``sending.record.pause_inbox``: once at most, then the send fails)."""
    defer_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    """Why the last dispatch could not place the next step (no eligible inbox), cleared when queued."""
    unsubscribe_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
