"""The outbox survives a SIGKILLed worker: every committed event is delivered, a rolled-back one never is.

Real ``nimbus worker`` processes (``tests.sending.fleet.Workers``) run the dispatcher as a deployment
does, woken by the ``events`` trigger's NOTIFY; the receiver is a real HTTPS server on loopback. The
webhook timeout is 2 s, so a lease a dead worker leaves lapses after 17 s (timeout + 15 s).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api import events
from nimbus_api.config import Settings
from nimbus_api.events.catalogue import WebhookTestData
from nimbus_api.models import WebhookDelivery
from tests.conftest import Tenant
from tests.sending.fleet import Workers, wait_until
from tests.servers.http_receiver import HttpReceiver, Received, Reply
from tests.servers.mail_world import MailWorld
from tests.webhooks.harness import add_endpoint, commit_events, url_of

FAST = {"NIMBUS_WEBHOOK_TIMEOUT_SECONDS": "2", "NIMBUS_WEBHOOK_POLL_SECONDS": "0.5"}


async def test_kill_9_between_commit_and_delivery_loses_nothing(
    tenant: Tenant,
    mail_world: MailWorld,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    phase = {"hold": True}

    def behaviour(_r: Received) -> Reply:
        return Reply(delay=60.0) if phase["hold"] else Reply()

    workers = Workers(settings, tmp_path, **FAST)
    async with HttpReceiver(behaviour=behaviour, tls=mail_world.certs.server_context()) as receiver:
        await add_endpoint(tenant.client, url_of(receiver))
        try:
            workers.start()
            before = await commit_events(sessionmaker, tenant.workspace_id, [{"n": n} for n in range(20)])

            async def held() -> bool:
                return len(receiver.requests) >= 4

            await wait_until(held, 30, "four requests in flight", workers)
            workers.kill_all()  # SIGKILL, with 4 requests in flight and 16 deliveries not yet sent
            during = await commit_events(sessionmaker, tenant.workspace_id, [{"n": n} for n in range(20, 30)])
            phase["hold"] = False
            workers.start()
            wanted = {str(e.id) for e in [*before, *during]}

            async def all_arrived() -> bool:
                return wanted <= {r.headers["webhook-id"] for r in receiver.requests}

            await wait_until(all_arrived, 60, "every event delivered", workers)

            async def recorded() -> bool:  # the receipt comes before the worker records it
                async with sessionmaker() as session:
                    statuses = list(
                        await session.scalars(
                            select(WebhookDelivery.status).where(WebhookDelivery.workspace_id == tenant.workspace_id)
                        )
                    )
                return len(statuses) == 30 and set(statuses) == {"succeeded"}

            await wait_until(recorded, 10, "every delivery recorded as succeeded", workers)

            async def one_attempt_each() -> bool:  # the killed worker recorded nothing: one attempt per delivery
                async with sessionmaker() as session:
                    counts = list(
                        await session.scalars(
                            select(WebhookDelivery.attempts).where(WebhookDelivery.workspace_id == tenant.workspace_id)
                        )
                    )
                return counts == [1] * 30

            assert await one_attempt_each()
        finally:
            workers.kill_all()
        received = [r.headers["webhook-id"] for r in receiver.requests]
        assert set(received) == wanted, "exactly once after dedupe on webhook-id"
        assert len(received) >= len(wanted) + 4, "the 4 requests in flight at the kill were sent again"


async def test_a_rolled_back_change_is_never_delivered_and_a_commit_wakes_the_worker_at_once(
    tenant: Tenant,
    receiver: HttpReceiver,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    await add_endpoint(tenant.client, url_of(receiver))
    # a poll of 30 s: anything that arrives sooner came by the NOTIFY of the commit
    workers = Workers(settings, tmp_path, NIMBUS_WEBHOOK_POLL_SECONDS="30")
    try:
        workers.start()
        (warm,) = await commit_events(sessionmaker, tenant.workspace_id, [{"warm": True}])
        await receiver.wait_for(1, timeout=30)  # the worker is up and listening

        rolled_back = uuid.uuid4()
        async with sessionmaker() as session, session.begin():
            row = events.emit(session, tenant.workspace_id, "webhook.test", WebhookTestData(endpoint_id=rolled_back))
            await session.flush()
            await session.rollback()
        committed_at = time.monotonic()
        (kept,) = await commit_events(sessionmaker, tenant.workspace_id, [{"kept": True}])
        await receiver.wait_for(2, timeout=5)
        latency = time.monotonic() - committed_at
        assert latency < 3.0, f"arrived {latency:.1f} s after the commit: not woken by NOTIFY"
        await asyncio.sleep(1.0)
        ids = [r.headers["webhook-id"] for r in receiver.requests]
        assert ids == [str(warm.id), str(kept.id)], ids
        async with sessionmaker() as session:
            assert await session.scalar(select(WebhookDelivery).where(WebhookDelivery.event_id == row.id)) is None
    finally:
        workers.kill_all()
