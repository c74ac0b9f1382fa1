"""Webhook deliveries (one event to one endpoint) and their attempts.

A delivery's states (written by ``webhooks.dispatcher`` and ``webhooks.claims`` only)::

    pending --2xx--------------------------------------------> succeeded
    pending --failure, attempts left---> pending (next_attempt_at = now + schedule[attempts])
    pending --failure, none left / 410 / abort-message / single attempt--> failed

While an attempt is in flight the row is *leased*: ``lease_id`` names the claim, ``leased_until`` is
when the lease lapses, and ``next_attempt_at`` is moved to that same moment. A worker that dies mid
attempt therefore leaves a row that becomes due again by itself when its lease lapses: the event is
sent again (at least once; receivers dedupe on ``webhook-id``, the event id). A late result from a
lapsed lease is recorded as an attempt but does not move the delivery (the record checks ``lease_id``).

A replay adds a new pending delivery for the same event and endpoint: the same ``webhook-id``, its own
attempts and schedule.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # claims: an endpoint's due deliveries, oldest first
        Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # in-flight count per endpoint (the concurrency cap across workers)
        Index(
            "ix_webhook_deliveries_leased", "endpoint_id", "leased_until", postgresql_where=text("lease_id IS NOT NULL")
        ),
        # GET /v1/webhook-endpoints/{id}/deliveries, newest first
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_event_id", "event_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    lease_id: Mapped[uuid.UUID | None] = mapped_column()
    leased_until: Mapped[datetime | None] = mapped_column()
    # A test delivery (``POST .../test``) is tried once, never retried.
    single_attempt: Mapped[bool] = mapped_column(Boolean, default=False)
    replay: Mapped[bool] = mapped_column(Boolean, default=False)
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error_class: Mapped[str | None] = mapped_column(String(30))
    final_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (
        # endpoint metrics over the last 24 h
        Index("ix_webhook_attempts_endpoint_id_attempted_at", "endpoint_id", "attempted_at"),
        Index("ix_webhook_attempts_delivery_id", "delivery_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column()
    number: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(30))
    error: Mapped[str | None] = mapped_column(String(300))
    will_retry: Mapped[bool] = mapped_column(Boolean)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
