"""The catalogue as OpenAPI 3.1 ``webhooks``: one operation per event type whose request body is that
type's envelope (``{"type", "timestamp", "data"}``), so generated SDKs get a typed payload per type."""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field, create_model

from nimbus_api.events.catalogue import CATALOGUE, Spec

WEBHOOK_HEADERS = (
    "Every delivery is a POST with the Standard Webhooks headers `webhook-id` (the event's id, the same on "
    "every retry), `webhook-timestamp` and `webhook-signature`. Answer 2xx within 15 s."
)


def _model_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace(".", "_").split("_")) + "Event"


def envelope(event_type: str, spec: Spec) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        _model_name(event_type),
        __doc__=spec.data.__doc__ or spec.summary,
        type=(Literal[event_type], Field(description="The event type.")),  # type: ignore[arg-type]
        timestamp=(datetime, Field(description="When it happened, ISO 8601 in UTC.")),
        data=(spec.data, ...),
    )
    return model


def register_webhooks(app: FastAPI) -> None:
    for event_type, spec in CATALOGUE.items():
        body = envelope(event_type, spec)

        def receiver(body: Any) -> None:  # documentation only: FastAPI never calls it
            """Never called."""

        receiver.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=body)],
            return_annotation=None,
        )
        reserved = "" if spec.emitted else " Reserved: not sent yet."
        app.webhooks.post(
            event_type,
            name=event_type,
            summary=spec.summary,
            description=f"{spec.summary}.{reserved} {WEBHOOK_HEADERS}",
            operation_id=f"webhook_{event_type.replace('.', '_')}",
            tags=["webhooks"],
            responses={200: {"description": "Received (any 2xx)."}},
        )(receiver)


def tidy_webhooks(schema: dict[str, Any]) -> None:
    """A webhook's answer is the receiver's: drop the 422 FastAPI adds for a body parameter (and the
    validation-error schemas only it used), and say nothing of the 2xx body."""
    for item in schema.get("webhooks", {}).values():
        for operation in item.values():
            operation["responses"] = {"200": {"description": "Received (any 2xx)."}}
    components = schema.get("components", {}).get("schemas", {})
    text = str(schema.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if name in components and f"#/components/schemas/{name}" not in text:
            del components[name]
