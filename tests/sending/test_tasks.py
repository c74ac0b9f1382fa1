"""The sending jobs wired as the worker runs them: dispatch -> enqueue after commit -> send -> sweep, and a
wiped Redis costs nothing but one sweep."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.net import build_net_context
from nimbus_api.sending import tasks
from nimbus_api.sending.mx import MxChecker
from nimbus_api.sending.tasks import QUEUE_NAME, dispatch_tick, send_inbox, sweep_tick, wakeups
from nimbus_api.smtp.pacing import Pacer
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.worker.context import WorkerResources
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld


@pytest.fixture
async def ctx(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> AsyncIterator[dict[str, Any]]:
    assert settings.redis_url
    redis: ArqRedis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    net = build_net_context(settings)
    async with SmtpPool(net) as pool:
        yield {
            "redis": redis,
            "nimbus": WorkerResources(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker,
                vault=vault,
                pool=pool,
                pacer=Pacer(redis, 50.0, prefix=f"nimbus:test:{secrets.token_hex(4)}"),
                mx=MxChecker(net.resolver),
                worker_id="test-worker",
            ),
        }
    await redis.aclose()


async def queued_jobs(redis: ArqRedis) -> set[str]:
    return {job.job_id or "" for job in await redis.queued_jobs(queue_name=QUEUE_NAME)}


async def sender_jobs(redis: ArqRedis, inbox: uuid.UUID) -> list[str]:
    """The queued sender jobs of one inbox (each job has an id of its own: ``send:<inbox>:<token>``)."""
    return sorted(job for job in await queued_jobs(redis) if job.startswith(f"send:{inbox}:"))


async def test_dispatch_wakes_senders_which_send_and_sweep_recovers_a_wiped_queue(
    ctx: dict[str, Any], campaigns: Campaigns, mail_world: MailWorld
) -> None:
    redis: ArqRedis = ctx["redis"]
    inboxes = [await campaigns.inbox(), await campaigns.inbox()]
    campaign_id = await campaigns.campaign(inboxes, [f"t{i}-{secrets.token_hex(2)}@example.org" for i in range(6)])
    assert await dispatch_tick(ctx) >= 6
    jobs = {inbox: await sender_jobs(redis, inbox) for inbox in inboxes}
    assert all(len(j) == 1 for j in jobs.values())  # one sender per inbox

    # Redis loses the queue (the inboxes' active marks survive, naming jobs arq no longer holds): the
    # sweeper finds the work in Postgres and enqueues new senders at once.
    for inbox_jobs in jobs.values():
        await redis.delete(f"arq:job:{inbox_jobs[0]}")
    await redis.delete(QUEUE_NAME)
    report = await sweep_tick(ctx)
    assert report["inboxes"] >= 2
    assert [len(await sender_jobs(redis, inbox)) for inbox in inboxes] == [1, 1]
    await sweep_tick(ctx)  # a job that arq holds is not doubled
    assert [len(await sender_jobs(redis, inbox)) for inbox in inboxes] == [1, 1]

    before = len(mail_world.smtp.messages)
    for inbox in inboxes:
        outcomes = await send_inbox(ctx, str(inbox))
        assert outcomes == {"sent": 3}
    assert len(mail_world.smtp.messages) - before == 6
    assert {m.state for m in await campaigns.messages(campaign_id)} == {"sent"}
    # Nothing is due twice: a second tick queues nothing for this campaign and a sender finds no work.
    await dispatch_tick(ctx)
    assert len(await campaigns.messages(campaign_id)) == 6
    assert await send_inbox(ctx, str(inboxes[0])) == {}


async def test_a_tick_feeds_a_campaign_batch_after_batch_and_wakes_senders_after_each(
    ctx: dict[str, Any], campaigns: Campaigns, settings: Settings
) -> None:
    resources: WorkerResources = ctx["nimbus"]
    ctx["nimbus"] = dataclasses.replace(resources, settings=settings.model_copy(update={"send_batch": 2}))
    inboxes = [await campaigns.inbox(), await campaigns.inbox()]
    big = await campaigns.campaign(inboxes, [f"b{i}-{secrets.token_hex(2)}@example.org" for i in range(7)])
    small = await campaigns.campaign(inboxes, [f"s{i}-{secrets.token_hex(2)}@example.org" for i in range(1)])
    # Seven due enrollments in batches of two: four transactions for the big campaign, in one tick,
    # the small one served in the first round.
    assert await dispatch_tick(ctx) >= 8
    assert len(await campaigns.messages(big)) == 7
    assert len(await campaigns.messages(small)) == 1
    assert [len(await sender_jobs(ctx["redis"], inbox)) for inbox in inboxes] == [1, 1]  # woken, not doubled
    await dispatch_tick(ctx)  # nothing is due twice
    assert (len(await campaigns.messages(big)), len(await campaigns.messages(small))) == (7, 1)


async def test_a_wake_while_the_sender_runs_is_served_by_that_sender(
    ctx: dict[str, Any], campaigns: Campaigns, mail_world: MailWorld
) -> None:
    redis: ArqRedis = ctx["redis"]
    inbox = await campaigns.inbox()
    first = await campaigns.campaign([inbox], [f"w{i}-{secrets.token_hex(2)}@example.org" for i in range(40)])
    await dispatch_tick(ctx)
    assert len(await sender_jobs(redis, inbox)) == 1
    running = asyncio.create_task(send_inbox(ctx, str(inbox)))  # paced at 50/s: 40 sends take 0.8 s
    await asyncio.sleep(0.1)
    second = await campaigns.campaign([inbox], [f"x{i}-{secrets.token_hex(2)}@example.org" for i in range(3)])
    await dispatch_tick(ctx)  # commits and wakes while the sender runs
    assert not running.done()
    assert len(await sender_jobs(redis, inbox)) == 1  # no second sender for the inbox
    assert await running == {"sent": 43}  # the running sender served the wake
    for campaign_id in (first, second):
        assert {m.state for m in await campaigns.messages(campaign_id)} == {"sent"}
    await dispatch_tick(ctx)  # nothing due: no wake
    assert len(await sender_jobs(redis, inbox)) == 1
    await wakeups(ctx).wake([inbox])  # the sender stopped and left the inbox idle: a wake enqueues one
    assert len(await sender_jobs(redis, inbox)) == 2


async def test_a_wake_between_the_senders_last_look_and_its_stop_is_not_lost(
    ctx: dict[str, Any], campaigns: Campaigns, mail_world: MailWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the wake-up keys close, made to happen: the dispatcher commits and wakes after the sender
    found nothing more due and before it stops. The sender must look again, and no second job is queued."""
    redis: ArqRedis = ctx["redis"]
    inbox = await campaigns.inbox()
    first = await campaigns.campaign([inbox], [f"y{i}-{secrets.token_hex(2)}@example.org" for i in range(2)])
    await dispatch_tick(ctx)
    real_run_inbox = tasks.run_inbox
    late: list[uuid.UUID] = []

    async def run_then_dispatch(*args: Any, **kwargs: Any) -> Any:
        report = await real_run_inbox(*args, **kwargs)  # ends with a lease that found nothing due
        if not late:
            late.append(
                await campaigns.campaign([inbox], [f"z{i}-{secrets.token_hex(2)}@example.org" for i in range(3)])
            )
            await dispatch_tick(ctx)  # commits and wakes in the window
        return report

    monkeypatch.setattr(tasks, "run_inbox", run_then_dispatch)
    assert await send_inbox(ctx, str(inbox)) == {"sent": 5}
    for campaign_id in (first, *late):
        assert {m.state for m in await campaigns.messages(campaign_id)} == {"sent"}
    assert len(await sender_jobs(redis, inbox)) == 1  # the first wake's job only: the late one made no other
