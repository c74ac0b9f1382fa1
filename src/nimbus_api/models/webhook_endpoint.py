"""Webhook endpoints (a customer's URL that events are sent to) and their signing secrets.

An endpoint's secret is kept in ``webhook_secrets``, encrypted under the workspace's data key exactly
like a mailbox password (``credentials``): a row names the data key that opens it. The current secret
has ``expires_at`` null; a rotation gives the previous one an expiry (``NIMBUS_WEBHOOK_SECRET_OVERLAP_HOURS``)
during which deliveries are signed with both, so a receiver holding either verifies. Expired rows are
deleted at the next rotation and never used.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(60)))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit_per_second: Mapped[int | None] = mapped_column(Integer)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None] = mapped_column()
    # Delivery state, written by the dispatcher: since when every attempt has failed (null after a
    # success), when it last claimed work here (round robin between endpoints), and the current
    # one-second window of the rate limit.
    failing_since: Mapped[datetime | None] = mapped_column()
    last_claimed_at: Mapped[datetime | None] = mapped_column()
    rate_window_start: Mapped[datetime | None] = mapped_column()
    rate_window_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookSecret(Base):
    __tablename__ = "webhook_secrets"
    __table_args__ = (
        # one current secret per endpoint
        Index(
            "uq_webhook_secrets_one_current",
            "endpoint_id",
            unique=True,
            postgresql_where=text("expires_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    data_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_keys.id"), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
