"""Campaigns, their ordered steps, and their sending pool.

Campaign status (changed only by ``campaigns.service``):

    draft --start--> active --pause--> paused --start--> active
    active --(every enrollment finished)--> completed
    active --(bounce rate over threshold; later issues)--> paused (``paused_reason`` says why)

``throttled`` is not a status: it is computed from the pool (no inbox eligible now) and shown with the
reasons per inbox; a throttled campaign is still ``active``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, Time, UniqueConstraint, false
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="draft")
    paused_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    min_health_score: Mapped[float] = mapped_column(Float, default=50.0)
    bounce_rate_threshold: Mapped[float] = mapped_column(Float, default=8.0)
    verify_email_mx: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_on_auto_reply: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """An auto-reply (out of office) ends the contact's sequence; by default the sequence goes on."""
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_days: Mapped[list[int]] = mapped_column(ARRAY(Integer), default=lambda: [0, 1, 2, 3, 4])
    send_start: Mapped[time] = mapped_column(Time, default=time(9, 0))
    send_end: Mapped[time] = mapped_column(Time, default=time(17, 0))
    randomize_delay_min_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    randomize_delay_max_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    exhausted_until: Mapped[datetime | None] = mapped_column(default=None)
    last_deferral: Mapped[dict[str, object] | None] = mapped_column(JSONB, default=None)
    """The latest dispatch that found no eligible inbox for some sends: when, how many, until when, and
    why per inbox (``sending.dispatcher``)."""
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CampaignStep(Base):
    __tablename__ = "campaign_steps"
    __table_args__ = (UniqueConstraint("campaign_id", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    delay_seconds: Mapped[int] = mapped_column(Integer, default=0)
    subject_template: Mapped[str] = mapped_column(Text)
    text_template: Mapped[str] = mapped_column(Text)
    html_template: Mapped[str | None] = mapped_column(Text, default=None)
    threaded: Mapped[bool] = mapped_column(Boolean, default=True)


class CampaignAccount(Base):
    """An inbox in a campaign's sending pool.

    ``disabled_at``: the bounce guard (``campaigns.bounce_guard``) took it out of this campaign's rotation
    (``disabled_reason`` ``bounce_rate``, the figures in ``disabled_detail``); re-enabling clears it and sets
    ``counts_since``, from which its bounce rate in this campaign is counted again.
    """

    __tablename__ = "campaign_accounts"

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    disabled_detail: Mapped[dict[str, object] | None] = mapped_column(JSONB, default=None)
    counts_since: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
