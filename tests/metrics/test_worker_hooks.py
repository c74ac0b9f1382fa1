"""The hooks in the worker's jobs: a dispatch batch's duration, the SMTP pool's connections (refreshed by
its sweep), and webhook deliveries by verdict, each read back through ``/metrics``."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.kit.crypto import Secret
from nimbus_api.models import EmailAccount, Message
from nimbus_api.sending.tasks import dispatch_tick
from nimbus_api.smtp.client import SmtpServer
from nimbus_api.smtp.pool import PoolKey
from nimbus_api.worker.context import resources
from tests.conftest import Tenant
from tests.metrics.conftest import scrape, value
from tests.sending.conftest import Campaigns
from tests.servers.http_receiver import HttpReceiver, Reply
from tests.servers.mail_world import SMTP_PASSWORD, MailWorld
from tests.webhooks.harness import Rig, add_endpoint, commit_events, url_of


async def test_a_dispatch_tick_observes_its_batches(
    ctx: dict[str, Any],
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics_http: httpx.AsyncClient,
) -> None:
    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], [f"d{i}-{secrets.token_hex(3)}@example.org" for i in range(3)])
    before = await scrape(metrics_http)
    await dispatch_tick(ctx)
    after = await scrape(metrics_http)
    async with sessionmaker() as session:
        queued = await session.scalar(select(func.count()).where(Message.campaign_id == campaign_id))
    assert queued == 3
    batches = value(after, "nimbus_dispatch_seconds_count") - value(before, "nimbus_dispatch_seconds_count")
    assert batches >= 1  # this campaign's batch (other tests' active campaigns may add theirs)
    assert value(after, "nimbus_dispatch_seconds_sum") > value(before, "nimbus_dispatch_seconds_sum")


async def test_the_pool_gauge_follows_the_connections(
    ctx: dict[str, Any],
    campaigns: Campaigns,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics_http: httpx.AsyncClient,
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, inbox)
    pool = resources(ctx).pool
    server = SmtpServer(
        host=account.smtp_host,
        port=account.smtp_port,
        mode="starttls",
        username=account.smtp_username,
        password=Secret(SMTP_PASSWORD),
    )
    async with pool.connection(PoolKey(str(inbox), 1), server, max_connections=1):
        await asyncio.sleep(0.3)  # a sweep or more
        held = await scrape(metrics_http)
    await asyncio.sleep(0.6)  # idle past the pool's idle timeout: closed by a sweep
    released = await scrape(metrics_http)
    assert value(held, "nimbus_smtp_pool_connections", state="leased") == 1
    assert value(released, "nimbus_smtp_pool_connections", state="leased") == 0
    assert value(released, "nimbus_smtp_pool_connections", state="idle") == 0


async def test_webhook_deliveries_are_counted_by_verdict(
    tenant: Tenant,
    rig: Rig,
    receiver: HttpReceiver,
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics_http: httpx.AsyncClient,
) -> None:
    answers = iter([500, 200])
    receiver.behaviour = lambda _r: Reply(status=next(answers))
    await add_endpoint(tenant.client, url_of(receiver))
    (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"n": 1}])
    before = await scrape(metrics_http)
    await rig.step()  # 500: another attempt is scheduled
    middle = await scrape(metrics_http)
    (delivery,) = await rig.deliveries(event.id)
    assert delivery.next_attempt_at is not None
    rig.clock.now = delivery.next_attempt_at
    await rig.step()  # 200
    after = await scrape(metrics_http)
    (delivery,) = await rig.deliveries(event.id)
    assert delivery.status == "succeeded"

    def delta(a: dict[Any, float], b: dict[Any, float], outcome: str) -> float:
        return value(b, "nimbus_webhook_deliveries_total", outcome=outcome) - value(
            a, "nimbus_webhook_deliveries_total", outcome=outcome
        )

    assert (delta(before, middle, "retrying"), delta(before, middle, "succeeded")) == (1, 0)
    assert (delta(middle, after, "retrying"), delta(middle, after, "succeeded")) == (0, 1)
    assert delta(before, after, "failed") == 0
