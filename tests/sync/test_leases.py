"""Leases: one worker per mailbox at a time, work shared between workers, a dead worker's mailboxes taken
over after its leases expire, and a worker that lost a mailbox writes nothing for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import MailboxSync
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import Account, RunnerFactory, deliver, inbound, mail

Connect = Callable[..., Awaitable[Account]]


async def test_two_workers_share_the_mailboxes_and_never_hold_one_together(
    connect: Connect, make_runner: RunnerFactory
) -> None:
    accounts = [await connect() for _ in range(6)]
    mine = {a.id for a in accounts}
    a, b = make_runner("worker-a"), make_runner("worker-b")
    await a.lease_round()
    assert set(a.held) == mine  # alone: it takes them all
    await b.lease_round()  # b: its share is half, but nothing is free yet
    await a.lease_round()  # a sees two live workers and releases its excess
    await b.lease_round()
    assert set(a.held).isdisjoint(b.held)
    assert set(a.held) | set(b.held) == mine and len(b.held) >= 1
    for _ in range(3):
        await a.lease_round()
        await b.lease_round()
        assert set(a.held).isdisjoint(b.held)


async def test_a_dead_workers_mailboxes_are_taken_over_after_the_lease(
    connect: Connect, make_runner: RunnerFactory, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    dead = make_runner("worker-dead", lease_seconds=2.0)
    await dead.lease_round()
    assert account.id in dead.held
    heir = make_runner("worker-heir", lease_seconds=2.0)
    await heir.lease_round()
    assert account.id not in heir.held
    await asyncio.sleep(2.2)  # the dead one renews nothing
    await heir.lease_round()
    assert account.id in heir.held
    deliver(mail_world, account, mail("for the heir"))
    await heir.poll_now(account.id)
    assert [r.subject for r in await inbound(sessionmaker, account.id)] == ["for the heir"]
    # the old owner, back from the dead, has lost it: its poll writes nothing and it lets go
    deliver(mail_world, account, mail("not for the dead"))
    await dead.poll_now(account.id)
    assert account.id not in dead.held
    assert [r.subject for r in await inbound(sessionmaker, account.id)] == ["for the heir"]
    await heir.poll_now(account.id)
    assert len(await inbound(sessionmaker, account.id)) == 2


async def test_a_stopped_worker_releases_its_leases(
    connect: Connect, make_runner: RunnerFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    first = make_runner("worker-first")
    await first.lease_round()
    await first.stop()
    async with sessionmaker() as session:
        row = await session.get_one(MailboxSync, account.id)
        assert row.lease_owner is None
        await session.execute(update(MailboxSync).where(MailboxSync.account_id == account.id).values())
    second = make_runner("worker-second")
    await second.lease_round()
    assert account.id in second.held
