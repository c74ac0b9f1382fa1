"""Webhook endpoint rules: create, list, read, update, delete, rotate the signing secret.

The secret is generated here (``whsec_`` + base64 of 32 random bytes, within Standard Webhooks' 24..64),
sealed by the vault under the workspace's data key in the same transaction as the endpoint, and returned
as a ``Secret`` only to the create and rotate routes, which show it once. Nothing else ever reads it
back: reads report only whether a previous secret is still valid and until when.

Rotation: the current secret's row gets ``expires_at = now + overlap`` (it becomes the previous one,
still used to sign during the overlap), a new current row is added, and rows already expired are deleted.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import dns.asyncresolver
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.egress import EgressPolicy
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import WebhookEndpoint, WebhookSecret
from nimbus_api.webhooks.delivery_schemas import EndpointMetrics
from nimbus_api.webhooks.errors import WebhookEndpointNotFound
from nimbus_api.webhooks.metrics import metrics
from nimbus_api.webhooks.schemas import WebhookEndpointCreate, WebhookEndpointRead, WebhookEndpointUpdate
from nimbus_api.webhooks.urls import check_url

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


@dataclass(frozen=True)
class UrlRules:
    """What a URL check needs from the process (the API's network context and settings)."""

    policy: EgressPolicy
    resolver: dns.asyncresolver.Resolver
    allow_http: bool
    overlap: timedelta


def new_secret() -> Secret:
    return Secret(SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii"))


async def _previous_expiry(session: AsyncSession, endpoint_ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    if not endpoint_ids:
        return {}
    rows = await session.execute(
        select(WebhookSecret.endpoint_id, func.max(WebhookSecret.expires_at))
        .where(
            WebhookSecret.endpoint_id.in_(endpoint_ids),
            WebhookSecret.expires_at.is_not(None),
            WebhookSecret.expires_at > utcnow(),
        )
        .group_by(WebhookSecret.endpoint_id)
    )
    return {row[0]: row[1] for row in rows if row[1] is not None}


def _read(row: WebhookEndpoint, previous_expires_at: datetime | None, health: EndpointMetrics) -> WebhookEndpointRead:
    return WebhookEndpointRead(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types),
        enabled=row.enabled,
        rate_limit_per_second=row.rate_limit_per_second,
        disabled_reason=row.disabled_reason,
        disabled_at=row.disabled_at,
        failing_since=row.failing_since,
        metrics=health,
        previous_secret_expires_at=previous_expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def to_read(session: AsyncSession, row: WebhookEndpoint) -> WebhookEndpointRead:
    return (await to_reads(session, [row]))[0]


async def to_reads(session: AsyncSession, rows: list[WebhookEndpoint]) -> list[WebhookEndpointRead]:
    ids = [r.id for r in rows]
    expiries = await _previous_expiry(session, ids)
    health = await metrics(session, ids)
    return [_read(r, expiries.get(r.id), health[r.id]) for r in rows]


async def _add_secret(session: AsyncSession, vault: Vault, endpoint: WebhookEndpoint) -> Secret:
    secret = new_secret()
    data_key_id, ciphertext = await vault.seal(session, endpoint.workspace_id, secret)
    session.add(
        WebhookSecret(
            workspace_id=endpoint.workspace_id,
            endpoint_id=endpoint.id,
            data_key_id=data_key_id,
            ciphertext=ciphertext,
        )
    )
    await session.flush()
    return secret


async def create(
    session: AsyncSession, vault: Vault, rules: UrlRules, workspace_id: uuid.UUID, body: WebhookEndpointCreate
) -> tuple[WebhookEndpoint, Secret]:
    await check_url(body.url, policy=rules.policy, resolver=rules.resolver, allow_http=rules.allow_http)
    endpoint = WebhookEndpoint(
        workspace_id=workspace_id,
        url=body.url,
        description=body.description,
        event_types=list(body.event_types),
        enabled=body.enabled,
        rate_limit_per_second=body.rate_limit_per_second,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, await _add_secret(session, vault, endpoint)


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.workspace_id == workspace_id
    )
    row = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if row is None:
        raise WebhookEndpointNotFound()
    return row


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[WebhookEndpoint], str | None]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)
    return page_of(list(await session.scalars(paginate(stmt, WebhookEndpoint.id, cursor, limit))), limit)


async def update(
    session: AsyncSession,
    rules: UrlRules,
    workspace_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
) -> WebhookEndpoint:
    row = await get(session, workspace_id, endpoint_id)
    given = body.model_fields_set
    if "url" in given and body.url is not None:
        await check_url(body.url, policy=rules.policy, resolver=rules.resolver, allow_http=rules.allow_http)
        row.url = body.url
    if "description" in given:
        row.description = body.description
    if "event_types" in given and body.event_types is not None:
        row.event_types = list(body.event_types)
    if "rate_limit_per_second" in given:
        row.rate_limit_per_second = body.rate_limit_per_second
    if "enabled" in given and body.enabled is not None:
        if body.enabled and not row.enabled:
            row.disabled_reason = None
            row.disabled_at = None
            row.failing_since = None
        if not body.enabled and row.enabled:
            row.disabled_at = utcnow()
        row.enabled = body.enabled
    row.updated_at = utcnow()
    await session.flush()
    return row


async def remove(session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    removed = await session.scalar(
        delete(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.workspace_id == workspace_id)
        .returning(WebhookEndpoint.id)
    )
    if removed is None:
        raise WebhookEndpointNotFound()


async def rotate_secret(
    session: AsyncSession, vault: Vault, rules: UrlRules, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
) -> tuple[WebhookEndpoint, Secret]:
    """A new current secret; the one it replaces stays valid for ``rules.overlap``."""
    row = await get(session, workspace_id, endpoint_id, for_update=True)
    now = utcnow()
    await session.execute(
        delete(WebhookSecret).where(
            WebhookSecret.endpoint_id == row.id,
            WebhookSecret.expires_at.is_not(None),
            WebhookSecret.expires_at <= now,
        )
    )
    current = await session.scalar(
        select(WebhookSecret).where(WebhookSecret.endpoint_id == row.id, WebhookSecret.expires_at.is_(None))
    )
    if current is not None:
        current.expires_at = now + rules.overlap
        await session.flush()
    row.updated_at = now
    return row, await _add_secret(session, vault, row)
