from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.api.query import IsoDateTime
from nimbus_api.events import service
from nimbus_api.events.catalogue import EventType
from nimbus_api.events.schemas import EventPage, EventRead
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses
from nimbus_api.webhooks import deliveries
from nimbus_api.webhooks.delivery_schemas import ReplayRequest, ReplayResult

router = APIRouter(prefix="/v1/events", tags=["events"], responses=problem_responses(401))


@router.get("", name="events_list", summary="List events", responses=problem_responses(422))
async def events_list(
    auth: AuthContext,
    session: Session,
    type: EventType | None = None,
    since: Annotated[IsoDateTime | None, Query(description="Inclusive lower bound (ISO 8601).")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> EventPage:
    """The workspace's events of the last `NIMBUS_EVENT_RETENTION_DAYS` days (30), newest first: what its
    webhooks are sent (the `webhooks` of this document describe each type's body)."""
    filters = service.EventFilters(type=type, since=since)
    rows, next_cursor = await service.list_page(session, auth.workspace_id, filters, cursor, limit)
    sent = await deliveries.of_events(session, [r.id for r in rows])
    return EventPage(
        data=[
            EventRead(id=r.id, type=r.type, created_at=r.created_at, payload=r.payload, deliveries=sent[r.id])
            for r in rows
        ],
        next_cursor=next_cursor,
    )


@router.post(
    "/{event_id}/replay",
    name="events_replay",
    summary="Send an event again, to every matching endpoint or to one",
    status_code=202,
    responses=problem_responses(
        404,
        409,
        422,
        codes={404: ["event.not_found", "webhook_endpoint.not_found"], 409: ["webhook_endpoint.disabled"]},
    ),
)
async def events_replay(
    event_id: uuid.UUID, payload: ReplayRequest, auth: AuthContext, session: Session
) -> ReplayResult:
    """New deliveries with the same `webhook-id` (receivers that dedupe on it see one event), each with its
    own attempts and retry schedule, sent as soon as this request commits."""
    rows = await deliveries.replay(session, auth.workspace_id, event_id, payload.endpoint_id)
    return ReplayResult(event_id=event_id, deliveries=[deliveries.summary(r) for r in rows])
