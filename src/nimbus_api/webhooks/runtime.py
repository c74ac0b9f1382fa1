"""Building the delivery machinery of a process (the API for test deliveries, each worker for all)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.kit.outage import Outages
from nimbus_api.webhooks.claims import Policy
from nimbus_api.webhooks.dispatcher import Dispatcher, listen_dsn
from nimbus_api.webhooks.signing import SecretBook
from nimbus_api.webhooks.transport import WebhookTransport


@dataclass
class WebhookKit:
    """A process's transport (one connection pool) and its book of opened signing secrets."""

    transport: WebhookTransport
    book: SecretBook
    policy: Policy

    async def close(self) -> None:
        await self.transport.close()


def delivery_policy(settings: Settings) -> Policy:
    return Policy(
        max_in_flight=settings.webhook_max_in_flight,
        # an attempt lasts at most the timeout; the margin covers recording it
        lease=timedelta(seconds=settings.webhook_timeout_seconds + 15),
        retry_after_cap=timedelta(seconds=settings.webhook_retry_after_cap_seconds),
        disable_after=timedelta(days=settings.webhook_disable_after_days),
    )


def build_kit(settings: Settings, net: NetContext, vault: Vault, actor: Actor) -> WebhookKit:
    transport = WebhookTransport(
        policy=net.policy,
        resolver=net.resolver,
        tls=net.tls,
        timeout=settings.webhook_timeout_seconds,
        allow_http=settings.webhook_allow_http,
        max_connections=max(16, settings.webhook_worker_concurrency * 2),
    )
    return WebhookKit(transport=transport, book=SecretBook(vault, actor), policy=delivery_policy(settings))


def build_dispatcher(
    settings: Settings,
    kit: WebhookKit,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    listen: bool = True,
    clock: Callable[[], datetime] = utcnow,
    rng: random.Random | None = None,
    outages: Outages | None = None,
) -> Dispatcher:
    assert settings.database_url
    return Dispatcher(
        sessionmaker,
        kit.transport,
        kit.book,
        kit.policy,
        concurrency=settings.webhook_worker_concurrency,
        poll_seconds=settings.webhook_poll_seconds,
        listen_dsn=listen_dsn(settings.database_url) if listen else None,
        clock=clock,
        rng=rng,
        outages=outages,
    )
