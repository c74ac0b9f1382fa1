"""The events tests reuse the sending tests' real inboxes, campaigns and pooled sender."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Event
from tests.sending.conftest import campaigns, deps, pool

__all__ = ["campaigns", "deps", "events_of", "pool"]


async def events_of(
    sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID, event_type: str | None = None
) -> list[Event]:
    """The workspace's events, oldest first."""
    stmt = select(Event).where(Event.workspace_id == workspace_id)
    if event_type:
        stmt = stmt.where(Event.type == event_type)
    async with sm() as session:
        return list(await session.scalars(stmt.order_by(Event.id)))
