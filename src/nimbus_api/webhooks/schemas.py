"""Webhook endpoint bodies. ``event_types`` items are exact: a catalogue type, ``*``, or the prefix of a
type family (``enrollment.*``), each a value the document lists, so what the document accepts is what
the server accepts. The secret is only in ``WebhookEndpointWithSecret`` (create and rotate answers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from typing_extensions import TypeAliasType

from nimbus_api.events.catalogue import EventType
from nimbus_api.kit.schemas import SINGLE_LINE_PATTERN, UNIQUE_ITEMS, PatchModel, StrictModel, as_sent, not_null
from nimbus_api.webhooks.delivery_schemas import EndpointMetrics

EventTypeFamily = TypeAliasType(
    "EventTypeFamily",
    Literal[
        "*", "account.*", "campaign.*", "enrollment.*", "contact.*", "message.*", "domain.*", "alert.*", "webhook.*"
    ],
)
EventTypeFilter = EventType | EventTypeFamily

URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[^\s\u0000]+$"
Url = Annotated[
    str,
    Field(
        min_length=10,
        max_length=2048,
        pattern=URL_PATTERN,
        description="Where deliveries are POSTed: `https://` (an operator may allow `http://`), port 443 or "
        "80 unless allowlisted, a host that resolves to public addresses only.",
        examples=["https://hooks.example.com/nimbus"],
    ),
    as_sent(2048, URL_PATTERN),
]
Description = Annotated[str, Field(min_length=1, max_length=500, pattern=SINGLE_LINE_PATTERN), as_sent(500)]
EventTypes = Annotated[
    list[EventTypeFilter],
    Field(
        min_length=1,
        max_length=50,
        json_schema_extra=UNIQUE_ITEMS,
        description="Types sent to this endpoint: exact types, `*` (all), or a family such as `enrollment.*`.",
    ),
]
RateLimit = Annotated[int, Field(ge=1, le=1000, description="At most this many deliveries a second.")]


def _every_type() -> list[EventTypeFilter]:
    return ["*"]


def _unique(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("must not repeat an event type")
    return values


class WebhookEndpointCreate(StrictModel):
    url: Url
    description: Description | None = None
    event_types: EventTypes = Field(default_factory=_every_type)
    enabled: bool = True
    rate_limit_per_second: RateLimit | None = None

    _event_types_unique = field_validator("event_types")(_unique)


class WebhookEndpointUpdate(PatchModel):
    url: Url | None = not_null()
    description: Description | None = Field(default=None, description="Null clears it.")
    event_types: EventTypes | None = not_null()
    enabled: bool | None = not_null(description="True again clears `disabled_reason`.")
    rate_limit_per_second: RateLimit | None = Field(default=None, description="Null removes the limit.")

    _event_types_unique = field_validator("event_types")(_unique)


class WebhookEndpointRead(BaseModel):
    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    rate_limit_per_second: int | None
    disabled_reason: str | None = Field(
        description="Why the endpoint was disabled automatically (410 Gone, or every attempt failing for "
        "`NIMBUS_WEBHOOK_DISABLE_AFTER_DAYS`), if it was; cleared when it is enabled again."
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(
        description="Since when every delivery attempt has failed; null after any success."
    )
    metrics: EndpointMetrics
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until when deliveries are also signed with the previous secret."
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointRead):
    secret: str = Field(
        description="The signing secret (`whsec_` + base64), shown only in this answer: store it now.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookEndpointPage(BaseModel):
    data: list[WebhookEndpointRead]
    next_cursor: str | None
