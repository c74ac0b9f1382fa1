"""`/v1/webhook-endpoints`: a workspace's receivers. The signing secret is in the create and rotate
answers only. Neither takes an ``Idempotency-Key``: a replayed answer would have to be stored, and the
secret is never stored in clear (a lost create answer is fixed by rotating the secret)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from nimbus_api.api.deps import AuthContext, Session, VaultDep, app_state
from nimbus_api.events.catalogue import EventType
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses
from nimbus_api.models import WebhookEndpoint
from nimbus_api.webhooks import deliveries, service
from nimbus_api.webhooks.delivery_schemas import DeliveryPage, DeliveryStatus, WebhookTestResult
from nimbus_api.webhooks.schemas import (
    WebhookEndpointCreate,
    WebhookEndpointPage,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from nimbus_api.webhooks.signing import SecretBook

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"], responses=problem_responses(401))

NOT_FOUND = "webhook_endpoint.not_found"
URL_REFUSED = "webhook_endpoint.url_refused"


def _rules(request: Request) -> service.UrlRules:
    state = app_state(request)
    return service.UrlRules(
        policy=state.verifier.net.policy,
        resolver=state.verifier.net.resolver,
        allow_http=state.settings.webhook_allow_http,
        overlap=timedelta(hours=state.settings.webhook_secret_overlap_hours),
    )


Rules = Annotated[service.UrlRules, Depends(_rules)]


async def _with_secret(session: Session, row: WebhookEndpoint, secret: Secret) -> WebhookEndpointWithSecret:
    read = await service.to_read(session, row)
    return WebhookEndpointWithSecret(**read.model_dump(), secret=secret.reveal())


@router.post(
    "",
    name="webhook_endpoints_create",
    summary="Add a webhook endpoint (the answer shows its signing secret, once)",
    status_code=201,
    responses=problem_responses(422, codes={422: ["validation_error", URL_REFUSED]}),
)
async def webhook_endpoints_create(
    payload: WebhookEndpointCreate, auth: AuthContext, session: Session, vault: VaultDep, rules: Rules
) -> WebhookEndpointWithSecret:
    """The URL is checked now (scheme, port, and every address its host resolves to, through the egress
    policy), and again before every delivery. `secret` is in this answer only."""
    row, secret = await service.create(session, vault, rules, auth.workspace_id, payload)
    return await _with_secret(session, row, secret)


@router.get("", name="webhook_endpoints_list", summary="List webhook endpoints", responses=problem_responses(422))
async def webhook_endpoints_list(
    auth: AuthContext, session: Session, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> WebhookEndpointPage:
    rows, next_cursor = await service.list_page(session, auth.workspace_id, cursor=cursor, limit=limit)
    return WebhookEndpointPage(data=await service.to_reads(session, rows), next_cursor=next_cursor)


@router.get(
    "/{endpoint_id}",
    name="webhook_endpoints_get",
    summary="Get a webhook endpoint",
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND]}),
)
async def webhook_endpoints_get(endpoint_id: uuid.UUID, auth: AuthContext, session: Session) -> WebhookEndpointRead:
    return await service.to_read(session, await service.get(session, auth.workspace_id, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    name="webhook_endpoints_update",
    summary="Change a webhook endpoint",
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND], 422: ["validation_error", URL_REFUSED]}),
)
async def webhook_endpoints_update(
    endpoint_id: uuid.UUID, payload: WebhookEndpointUpdate, auth: AuthContext, session: Session, rules: Rules
) -> WebhookEndpointRead:
    """Only the fields given change; a new URL is checked as on create."""
    row = await service.update(session, rules, auth.workspace_id, endpoint_id, payload)
    return await service.to_read(session, row)


@router.delete(
    "/{endpoint_id}",
    name="webhook_endpoints_delete",
    summary="Delete a webhook endpoint",
    status_code=204,
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND]}),
)
async def webhook_endpoints_delete(endpoint_id: uuid.UUID, auth: AuthContext, session: Session) -> Response:
    """Nothing more is sent to it; its secrets are deleted with it."""
    await service.remove(session, auth.workspace_id, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    name="webhook_endpoints_rotate_secret",
    summary="Rotate the signing secret (the answer shows the new one, once)",
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND]}),
)
async def webhook_endpoints_rotate_secret(
    endpoint_id: uuid.UUID, auth: AuthContext, session: Session, vault: VaultDep, rules: Rules
) -> WebhookEndpointWithSecret:
    """Deliveries are signed with the new secret and, until `previous_secret_expires_at`
    (`NIMBUS_WEBHOOK_SECRET_OVERLAP_HOURS`, 24 h), also with the previous one, so a receiver holding
    either verifies while it switches."""
    row, secret = await service.rotate_secret(session, vault, rules, auth.workspace_id, endpoint_id)
    return await _with_secret(session, row, secret)


@router.get(
    "/{endpoint_id}/deliveries",
    name="webhook_endpoints_deliveries",
    summary="List an endpoint's deliveries, with every attempt",
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND]}),
)
async def webhook_endpoints_deliveries(
    endpoint_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    status: DeliveryStatus | None = None,
    event_type: EventType | None = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> DeliveryPage:
    """Newest first. Each delivery lists its attempts: time, status code, latency, the first 2 KB of the
    answer, the error class, and whether (and when) it is tried again."""
    filters = deliveries.DeliveryFilters(status=status, event_type=event_type)
    rows, next_cursor = await deliveries.list_page(session, auth.workspace_id, endpoint_id, filters, cursor, limit)
    return DeliveryPage(data=await deliveries.reads(session, rows), next_cursor=next_cursor)


@router.post(
    "/{endpoint_id}/test",
    name="webhook_endpoints_test",
    summary="Send a webhook.test event to this endpoint now, and return the attempt's result",
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND]}),
)
async def webhook_endpoints_test(
    endpoint_id: uuid.UUID, request: Request, auth: AuthContext, session: Session, vault: VaultDep
) -> WebhookTestResult:
    """Signed and sent like every delivery (the same egress policy, timeout and headers), once: a test
    delivery that fails is not retried. It is sent even when the endpoint is disabled, so a receiver can
    be checked before it is enabled again. The answer is the delivery with its one attempt."""
    kit = app_state(request).webhooks
    book = SecretBook(vault, auth.actor)
    row = await deliveries.send_test(session, kit, book, auth.workspace_id, endpoint_id)
    read = (await deliveries.reads(session, [row]))[0]
    return WebhookTestResult(delivery=read, succeeded=row.status == "succeeded")
