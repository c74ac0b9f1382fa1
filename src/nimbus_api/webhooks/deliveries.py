"""Reading deliveries and endpoint metrics, replaying an event, and the synchronous test delivery."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.events.catalogue import WebhookTestData
from nimbus_api.events.service import payload_of
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.kit.problems import NotFound, Problem
from nimbus_api.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from nimbus_api.webhooks import claims
from nimbus_api.webhooks.delivery_schemas import (
    AttemptRead,
    DeliveryRead,
    DeliverySummary,
)
from nimbus_api.webhooks.runtime import WebhookKit
from nimbus_api.webhooks.service import get as get_endpoint
from nimbus_api.webhooks.signing import SecretBook


class EventNotFound(NotFound):
    code = "event.not_found"
    title = "No such event in this workspace"


class EndpointDisabled(Problem):
    status = 409
    code = "webhook_endpoint.disabled"
    title = "The webhook endpoint is disabled"


@dataclass(frozen=True)
class DeliveryFilters:
    status: str | None = None
    event_type: str | None = None


def _attempt(row: WebhookAttempt) -> AttemptRead:
    return AttemptRead(
        id=row.id,
        number=row.number,
        attempted_at=row.attempted_at,
        status_code=row.status_code,
        latency_ms=row.latency_ms,
        response_body=row.response_body,
        error_class=row.error_class,
        error=row.error,
        will_retry=row.will_retry,
        next_attempt_at=row.next_attempt_at,
    )


async def reads(session: AsyncSession, rows: list[WebhookDelivery]) -> list[DeliveryRead]:
    attempts: dict[uuid.UUID, list[AttemptRead]] = {r.id: [] for r in rows}
    if rows:
        found = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number, WebhookAttempt.attempted_at)
        )
        for a in found:
            attempts[a.delivery_id].append(_attempt(a))
    return [
        DeliveryRead(
            id=r.id,
            event_id=r.event_id,
            event_type=r.event_type,
            endpoint_id=r.endpoint_id,
            status=r.status,
            attempts=r.attempts,
            next_attempt_at=r.next_attempt_at if r.status == "pending" else None,
            last_attempt_at=r.last_attempt_at,
            last_status_code=r.last_status_code,
            last_error_class=r.last_error_class,
            final_reason=r.final_reason,
            replay=r.replay,
            test=r.single_attempt,
            created_at=r.created_at,
            finished_at=r.finished_at,
            attempt_log=attempts[r.id],
        )
        for r in rows
    ]


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    filters: DeliveryFilters,
    cursor: str | None,
    limit: int,
) -> tuple[list[WebhookDelivery], str | None]:
    await get_endpoint(session, workspace_id, endpoint_id)
    stmt = select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.workspace_id == workspace_id
    )
    if filters.status:
        stmt = stmt.where(WebhookDelivery.status == filters.status)
    if filters.event_type:
        stmt = stmt.where(WebhookDelivery.event_type == filters.event_type)
    return page_of(list(await session.scalars(paginate(stmt, WebhookDelivery.id, cursor, limit))), limit)


def summary(row: WebhookDelivery) -> DeliverySummary:
    return DeliverySummary(
        delivery_id=row.id,
        endpoint_id=row.endpoint_id,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        replay=row.replay,
    )


async def of_events(session: AsyncSession, event_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[DeliverySummary]]:
    found: dict[uuid.UUID, list[DeliverySummary]] = {e: [] for e in event_ids}
    if event_ids:
        rows = await session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id.in_(event_ids))
            .order_by(WebhookDelivery.event_id, WebhookDelivery.id)
        )
        for row in rows:
            found[row.event_id].append(summary(row))
    return found


async def replay(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID, endpoint_id: uuid.UUID | None
) -> list[WebhookDelivery]:
    """New pending deliveries of the event (same ``webhook-id``), due now; the dispatcher is woken at commit."""
    event = await session.scalar(select(Event).where(Event.id == event_id, Event.workspace_id == workspace_id))
    if event is None:
        raise EventNotFound()
    if endpoint_id is not None:
        endpoint = await get_endpoint(session, workspace_id, endpoint_id)
        if not endpoint.enabled:
            raise EndpointDisabled("enable the endpoint first (PATCH enabled: true), then replay")
        targets = [endpoint.id]
    else:
        family = event.type.split(".", 1)[0] + ".*"
        targets = list(
            await session.scalars(
                select(WebhookEndpoint.id)
                .where(
                    WebhookEndpoint.workspace_id == workspace_id,
                    WebhookEndpoint.enabled,
                    WebhookEndpoint.event_types.overlap(["*", event.type, family]),
                )
                .order_by(WebhookEndpoint.id)
            )
        )
    now = utcnow()
    rows = [
        WebhookDelivery(
            id=new_id(),
            workspace_id=workspace_id,
            event_id=event.id,
            endpoint_id=target,
            event_type=event.type,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            single_attempt=False,
            replay=True,
            created_at=now,
        )
        for target in targets
    ]
    session.add_all(rows)
    await session.flush()
    await session.execute(text("SELECT pg_notify('nimbus_webhooks', 'replay')"))
    return rows


async def send_test(
    session: AsyncSession, kit: WebhookKit, book: SecretBook, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookDelivery:
    """A ``webhook.test`` event sent to this endpoint alone, now, once; the attempt is recorded like any.

    ``book`` is the request's own: the API decrypts (and audits) the secret for every test it sends."""
    endpoint = await get_endpoint(session, workspace_id, endpoint_id)
    now = utcnow()
    event = Event(
        id=new_id(),
        workspace_id=workspace_id,
        type="webhook.test",
        payload=payload_of("webhook.test", WebhookTestData(endpoint_id=endpoint.id), now),
        created_at=now,
        dispatched_at=now,
    )
    lease_id = uuid.uuid4()
    leased_until = now + kit.policy.lease
    delivery = WebhookDelivery(
        id=new_id(),
        workspace_id=workspace_id,
        event_id=event.id,
        endpoint_id=endpoint.id,
        event_type=event.type,
        status="pending",
        attempts=0,
        next_attempt_at=leased_until,
        lease_id=lease_id,
        leased_until=leased_until,
        single_attempt=True,
        replay=False,
        created_at=now,
    )
    session.add(event)
    await session.flush()
    session.add(delivery)
    await session.flush()
    signers = await book.signers(session, [endpoint.id], now)
    body = (await claims.bodies(session, [event.id]))[event.id]
    claim = claims.Claim(
        delivery_id=delivery.id,
        lease_id=lease_id,
        workspace_id=workspace_id,
        endpoint_id=endpoint.id,
        event_id=event.id,
        event_type=event.type,
        url=endpoint.url,
        attempts=0,
        single_attempt=True,
    )
    attempted_at = utcnow()
    outcome = await kit.transport.post(
        endpoint.url, signers[endpoint.id].headers(claim.webhook_id, attempted_at, body), body
    )
    await claims.record(session, [claims.Result(claim, outcome, attempted_at, utcnow())], kit.policy)
    await session.refresh(delivery)
    return delivery
