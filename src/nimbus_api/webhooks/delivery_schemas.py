"""Read models of deliveries, attempts and endpoint metrics, and the replay body."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import JsonUuid, StrictModel

DeliveryStatus = TypeAliasType("DeliveryStatus", Literal["pending", "succeeded", "failed"])
ErrorClass = TypeAliasType(
    "ErrorClass",
    Literal[
        "timeout",
        "connect_refused",
        "connect_error",
        "tls",
        "protocol",
        "egress_refused",
        "unresolvable",
        "redirect",
        "http_status",
        "gone",
    ],
)


class AttemptRead(BaseModel):
    id: uuid.UUID
    number: int = Field(description="1 for the first attempt of the delivery, up to 10.")
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    latency_ms: int
    response_body: str | None = Field(description="The first 2 KB of the answer's body.")
    error_class: ErrorClass | None = Field(description="Why the attempt failed; null when it succeeded.")
    error: str | None
    will_retry: bool
    next_attempt_at: datetime | None


class DeliveryRead(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt.")
    event_type: str
    endpoint_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error_class: ErrorClass | None
    final_reason: str | None = Field(description="Why a failed delivery is not retried.")
    replay: bool
    test: bool = Field(description="A `POST .../test` delivery (tried once).")
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptRead] = Field(description="Every attempt, oldest first.")


class DeliveryPage(BaseModel):
    data: list[DeliveryRead]
    next_cursor: str | None


class DeliverySummary(BaseModel):
    """An event's delivery to one endpoint, as `GET /v1/events` shows it."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    next_attempt_at: datetime | None
    replay: bool


class LastError(BaseModel):
    at: datetime
    error_class: ErrorClass
    status_code: int | None
    error: str | None


class EndpointMetrics(BaseModel):
    attempts_24h: int
    success_rate_24h: float | None = Field(description="Succeeded attempts / attempts, last 24 h (null: none).")
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    last_error: LastError | None


class ReplayRequest(StrictModel):
    endpoint_id: JsonUuid | None = Field(
        default=None, description="Only this endpoint; otherwise every enabled endpoint the event's type matches."
    )


class ReplayResult(BaseModel):
    event_id: uuid.UUID
    deliveries: list[DeliverySummary]


class WebhookTestResult(BaseModel):
    delivery: DeliveryRead
    succeeded: bool
