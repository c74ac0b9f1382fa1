"""The catalogue: a schema per type, payloads bounded by construction, and ``emit``'s own checks."""

from __future__ import annotations

import json
import types
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from annotated_types import MaxLen
from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typing_extensions import TypeAliasType

from nimbus_api.events.catalogue import (
    CATALOGUE,
    MAX_PAYLOAD_BYTES,
    CampaignPausedData,
    CampaignStartedData,
    ContactSuppressedData,
    EventType,
)
from nimbus_api.events.service import EventTooLarge, payload_of

WIDE = "\U0001d11e"  # four bytes in UTF-8, and twelve as a JSON escape would be: the widest a character gets


def _unwrap(tp: Any) -> Any:
    while isinstance(tp, TypeAliasType):
        tp = tp.__value__
    return tp


def _widest(tp: Any, metadata: list[Any]) -> Any:
    """The largest value a field of this type can hold."""
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        flat = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return _widest(base, metadata + flat)
    if origin in (Union, types.UnionType):
        return _widest(next(a for a in get_args(tp) if a is not type(None)), metadata)
    limit = next((m.max_length for m in metadata if isinstance(m, MaxLen)), None)
    if origin is Literal:
        return max(get_args(tp), key=lambda v: len(str(v)))
    if origin is list:
        assert limit is not None, "every list in a payload is bounded"
        return [_widest(get_args(tp)[0], []) for _ in range(limit)]
    if tp is str:
        assert limit is not None, "every text in a payload is bounded"
        return WIDE * limit
    if tp is uuid.UUID:
        return uuid.uuid4()
    if tp is bool:
        return False
    if tp is int:
        return 599
    if tp is float:
        return 99.99999999999999
    raise AssertionError(f"no widest value for {tp!r}")


def widest(model: type[BaseModel]) -> BaseModel:
    return model.model_construct(
        **{name: _widest(f.annotation, list(f.metadata)) for name, f in model.model_fields.items()}
    )


def test_every_type_in_the_document_value_set_has_a_schema() -> None:
    assert set(get_args(EventType.__value__)) == set(CATALOGUE)
    emitted = {t for t, spec in CATALOGUE.items() if spec.emitted}
    assert emitted == {
        "account.disabled",
        "account.enabled",
        "account.sync_failed",
        "account.health_changed",
        "campaign.started",
        "campaign.paused",
        "campaign.completed",
        "enrollment.completed",
        "enrollment.bounced",
        "enrollment.unsubscribed",
        "enrollment.replied",
        "enrollment.auto_replied",
        "contact.suppressed",
        "message.bounced",
        "message.complained",
        "domain.unhealthy",
        "domain.healthy",
        "alert.triggered",
        "alert.resolved",
        "webhook.test",
    }


@pytest.mark.parametrize("event_type", sorted(CATALOGUE))
def test_the_largest_payload_of_every_type_stays_under_the_bound(event_type: str) -> None:
    data = widest(CATALOGUE[event_type].data)
    payload = payload_of(event_type, data, datetime.now(UTC))
    # the widest encoding: every non-ASCII character escaped (a receiver may re-serialize it so)
    assert len(json.dumps(payload).encode()) < MAX_PAYLOAD_BYTES
    assert set(payload) == {"type", "timestamp", "data"} and payload["type"] == event_type
    assert payload["timestamp"].endswith("Z")


def test_emit_refuses_data_of_another_type_an_unknown_type_and_an_oversized_payload() -> None:
    now = datetime.now(UTC)
    started = CampaignStartedData(campaign_id=uuid.uuid4(), name="x", resumed=False)
    with pytest.raises(TypeError):
        payload_of("campaign.paused", started, now)
    with pytest.raises(ValueError, match="unknown event type"):
        payload_of("campaign.exploded", started, now)
    # bypassing validation is the only way past the field bounds: the size check still holds
    huge = CampaignPausedData.model_construct(campaign_id=uuid.uuid4(), name="n" * MAX_PAYLOAD_BYTES, reason="manual")
    with pytest.raises(EventTooLarge):
        payload_of("campaign.paused", huge, now)
    suppressed = ContactSuppressedData(suppression_id=uuid.uuid4(), email="a@example.org", reason="manual")
    assert payload_of("contact.suppressed", suppressed, now)["data"]["reason"] == "manual"


def test_the_document_has_a_webhook_with_a_schema_per_type(app: FastAPI) -> None:
    document = app.openapi()
    assert document["openapi"].startswith("3.1")
    webhooks = document["webhooks"]
    assert set(webhooks) == set(CATALOGUE)
    schemas = document["components"]["schemas"]
    for event_type, item in webhooks.items():
        ref = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        envelope = schemas[ref.rsplit("/", 1)[1]]
        assert envelope["properties"]["type"]["const"] == event_type
        assert set(envelope["required"]) == {"type", "timestamp", "data"}
        data = envelope["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert data == CATALOGUE[event_type].data.__name__ and data in schemas
        assert set(item["post"]["responses"]) == {"200"}
    assert "HTTPValidationError" not in schemas
