"""Webhooks of sending services (Amazon SES via SNS, Postmark, SendGrid, Mailgun, SMTP2GO) that report
bounces and complaints, and the notifications they delivered.

A hook is reached at ``/hooks/{provider}/{token}``: only the SHA-256 of the token is stored (the token is
shown once, in the create answer), and the lookup is by that digest, so the token is never compared in
clear. What a scheme needs to check a notification: the Mailgun HTTP webhook signing key (sealed by the
vault like a webhook secret: ``data_key_id`` + ``ciphertext``), the SendGrid Signed Event
Webhook's public key (public, stored as given), HTTP basic credentials for Postmark and SMTP2GO (the
password as a salted scrypt digest: it is only ever checked, never used), and an optional SNS topic the
hook is pinned to.

``provider_hook_events`` holds one row per notification (the provider's own event id), unique per hook:
a replayed notification finds its row and changes nothing, whatever it says.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class ProviderHook(Base):
    __tablename__ = "provider_hooks"
    __table_args__ = (Index("ix_provider_hooks_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    description: Mapped[str | None] = mapped_column(String(500))
    topic_arn: Mapped[str | None] = mapped_column(String(300))
    basic_username: Mapped[str | None] = mapped_column(String(200))
    basic_password_hash: Mapped[str | None] = mapped_column(String(300))
    public_key: Mapped[str | None] = mapped_column(Text)
    data_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("data_keys.id"), index=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    subscription_confirmed_at: Mapped[datetime | None] = mapped_column()
    last_received_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProviderHookEvent(Base):
    """One notification a hook accepted: what it said, what it matched and what it did (``outcome``)."""

    __tablename__ = "provider_hook_events"
    __table_args__ = (UniqueConstraint("hook_id", "event_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    hook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("provider_hooks.id", ondelete="CASCADE"))
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    message_id: Mapped[uuid.UUID | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
