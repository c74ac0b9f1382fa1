"""The event outbox: one row per state change a customer's systems may want to hear about.

A row is added by ``events.emit`` in the session of the change it reports, so it commits or rolls back
with it: a rolled-back change leaves no event, a committed one always has its event, even when the
process dies right after the commit. The id (a UUIDv7, so time-ordered) is the event's identity for
ever after: it is the ``webhook-id`` of every delivery of the event. ``payload`` is the exact document a
receiver gets: ``{"type", "timestamp", "data"}`` (``events.catalogue`` has one schema per type).
A statement-level trigger ``NOTIFY``s channel ``nimbus_webhooks`` on insert: PostgreSQL delivers it at
commit only, so the webhook dispatcher wakes for committed events and never for rolled-back ones.
Rows older than ``NIMBUS_EVENT_RETENTION_DAYS`` are purged by the worker (``events.tasks``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        # GET /v1/events: a workspace's events newest first (ids are time-ordered), with or without a type.
        Index("ix_events_workspace_id_id", "workspace_id", "id"),
        Index("ix_events_workspace_id_type_id", "workspace_id", "type", "id"),
        # the retention purge
        Index("ix_events_created_at", "created_at"),
        # the webhook dispatcher's fan-out: events not yet turned into deliveries
        Index("ix_events_undispatched", "id", postgresql_where=text("dispatched_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set by the webhook dispatcher when it has written one delivery per matching endpoint (or none);
    # events written for one endpoint only (``webhook.test``) are born dispatched.
    dispatched_at: Mapped[datetime | None] = mapped_column()
