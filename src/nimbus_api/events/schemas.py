from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from nimbus_api.events.catalogue import EventType
from nimbus_api.webhooks.delivery_schemas import DeliverySummary


class EventRead(BaseModel):
    id: uuid.UUID = Field(description="A UUIDv7; the `webhook-id` of every delivery of this event.")
    type: EventType
    created_at: datetime
    payload: dict[str, Any] = Field(
        description="The webhook body, exactly: `type`, `timestamp` and `data` (each type's schema is under "
        "`webhooks` in this document)."
    )
    deliveries: list[DeliverySummary] = Field(
        description="One per endpoint it was sent to (and per replay), with its status; empty when no "
        "endpoint took this type or the dispatcher has not reached it yet."
    )


class EventPage(BaseModel):
    data: list[EventRead]
    next_cursor: str | None
