"""Writing events into the outbox, and reading them back.

``emit`` adds the row to the caller's session and never flushes or commits: the row is written by the
same transaction as the change it reports (the request or task boundary commits both, or neither).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.events.catalogue import CATALOGUE, MAX_PAYLOAD_BYTES, EventData
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_ids
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import Event


class EventTooLarge(ValueError):
    """A payload over ``MAX_PAYLOAD_BYTES``: a bug in the emitting code (every field is bounded)."""


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the microsecond: ``2026-12-02T13:50:00.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload_of(event_type: str, data: EventData, moment: datetime) -> dict[str, Any]:
    spec = CATALOGUE.get(event_type)
    if spec is None:
        raise ValueError(f"unknown event type {event_type!r}")
    if type(data) is not spec.data:
        raise TypeError(f"{event_type} takes {spec.data.__name__}, not {type(data).__name__}")
    payload = {"type": event_type, "timestamp": timestamp(moment), "data": data.model_dump(mode="json")}
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise EventTooLarge(f"{event_type} payload is {size} bytes, over {MAX_PAYLOAD_BYTES}")
    return payload


def emit(session: AsyncSession, workspace_id: uuid.UUID, event_type: str, data: EventData) -> Event:
    """Add one event to the session's unit of work (written when the caller's transaction flushes)."""
    return emit_many(session, workspace_id, event_type, [data])[0]


def emit_many(
    session: AsyncSession, workspace_id: uuid.UUID, event_type: str, items: Sequence[EventData]
) -> list[Event]:
    """Events of one type for one workspace (a batch of sends): one insert when the session flushes."""
    now = utcnow()
    rows = [
        Event(
            id=event_id,
            workspace_id=workspace_id,
            type=event_type,
            payload=payload_of(event_type, data, now),
            created_at=now,
        )
        for event_id, data in zip(new_ids(len(items)), items, strict=True)
    ]
    session.add_all(rows)
    return rows


@dataclass(frozen=True)
class EventFilters:
    type: str | None = None
    since: datetime | None = None


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, filters: EventFilters, cursor: str | None, limit: int
) -> tuple[list[Event], str | None]:
    stmt = select(Event).where(Event.workspace_id == workspace_id)
    if filters.type:
        stmt = stmt.where(Event.type == filters.type)
    if filters.since:
        stmt = stmt.where(Event.created_at >= filters.since)
    return page_of(list(await session.scalars(paginate(stmt, Event.id, cursor, limit))), limit)
