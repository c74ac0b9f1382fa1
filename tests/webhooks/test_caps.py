"""Per-endpoint concurrency across workers, the rate limit, and a stalled endpoint holding only its own slots."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from tests.conftest import Tenant
from tests.servers.http_receiver import HttpReceiver, Received, Reply
from tests.servers.mail_world import MailWorld
from tests.webhooks.harness import add_endpoint, commit_events, make_rig, url_of


async def test_two_workers_never_hold_more_than_the_cap_and_a_stalled_endpoint_does_not_hold_up_another(
    tenant: Tenant,
    mail_world: MailWorld,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:

    def slow(_r: Received) -> Reply:
        return Reply(delay=3.0)

    async with (
        HttpReceiver(behaviour=slow, tls=mail_world.certs.server_context()) as stalled,
        HttpReceiver(tls=mail_world.certs.server_context()) as healthy,
    ):
        await add_endpoint(tenant.client, url_of(stalled), event_types=["webhook.test"])
        await add_endpoint(tenant.client, url_of(healthy), event_types=["webhook.test"])
        await commit_events(sessionmaker, tenant.workspace_id, [{"n": n} for n in range(40)])
        one = make_rig(settings, sessionmaker, vault, webhook_timeout_seconds=10.0)
        two = make_rig(settings, sessionmaker, vault, webhook_timeout_seconds=10.0)
        try:
            started = time.monotonic()
            while len(healthy.requests) < 40 and time.monotonic() - started < 10:
                await one.dispatcher.run_round()
                await two.dispatcher.run_round()
                await one.dispatcher.drain(0.05)
                await two.dispatcher.drain(0.05)
            elapsed = time.monotonic() - started
            assert len(healthy.requests) == 40, len(healthy.requests)
            assert elapsed < 3.0, f"the healthy endpoint waited for the stalled one ({elapsed:.1f} s)"
            # the stalled endpoint got its 4 slots across both workers, not 4 each
            assert len(stalled.requests) == 4, len(stalled.requests)
            assert one.dispatcher.in_flight + two.dispatcher.in_flight == 4
        finally:
            await asyncio.gather(one.dispatcher.drain(5), two.dispatcher.drain(5))
            await one.close()
            await two.close()


async def test_the_rate_limit_holds_across_workers(
    tenant: Tenant,
    receiver: HttpReceiver,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:
    await add_endpoint(tenant.client, url_of(receiver), rate_limit_per_second=3, event_types=["webhook.test"])
    await commit_events(sessionmaker, tenant.workspace_id, [{"n": n} for n in range(12)])
    one = make_rig(settings, sessionmaker, vault)
    two = make_rig(settings, sessionmaker, vault, clock=one.clock)
    try:
        for _ in range(3):
            await one.step()
            await two.step()
        assert len(receiver.requests) == 3  # one clock second: three sends, by both workers together
        one.clock.advance(timedelta(seconds=1))
        await one.step()
        await two.step()
        assert len(receiver.requests) == 6
    finally:
        await one.close()
        await two.close()
