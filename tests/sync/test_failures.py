"""Sync failures are visible per account and paced: a wrong password marks the sync failing and emits
``account.sync_failed`` once; a server that is down is retried with backoff; success clears both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.kit.db import utcnow
from nimbus_api.models import CredentialAccess, EmailAccount, Event, MailboxSync
from tests.servers.mail_world import IMAP_PASSWORD, MailWorld
from tests.sync.conftest import Account, RunnerFactory, deliver, inbound, mail, sync_row

Connect = Callable[..., Awaitable[Account]]


async def _events(sessionmaker: async_sessionmaker[AsyncSession], account: Account, kind: str) -> list[Event]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Event).where(Event.workspace_id == account.workspace_id, Event.type == kind)
        )
        return list(rows)


async def test_wrong_password_fails_visibly_notifies_once_and_clears(
    connect: Connect, make_runner: RunnerFactory, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    runner = make_runner()
    await runner.lease_round()
    mail_world.dovecot.add_user(account.email, "changed-by-the-user")
    await asyncio.sleep(1.1)  # Dovecot re-reads a changed passwd-file after a second
    for _ in range(3):
        await runner.poll_now(account.id)
    status = await sync_row(sessionmaker, account.id)
    assert status.status == "failing" and status.consecutive_failures == 3
    assert status.last_error_code == "imap.auth_failed" and status.failing_since is not None
    assert status.next_poll_at > utcnow()
    [event] = await _events(sessionmaker, account, "account.sync_failed")
    assert event.payload["data"]["error_code"] == "imap.auth_failed"
    assert event.payload["data"]["account_id"] == str(account.id)

    mail_world.dovecot.add_user(account.email, IMAP_PASSWORD)
    await asyncio.sleep(1.1)
    deliver(mail_world, account, mail("back"))
    await runner.poll_now(account.id)
    status = await sync_row(sessionmaker, account.id)
    assert (status.status, status.consecutive_failures, status.last_error_code) == ("ok", 0, None)
    assert status.failure_notified_at is None
    assert [r.subject for r in await inbound(sessionmaker, account.id)] == ["back"]


async def test_a_server_that_is_down_is_retried_with_backoff_not_in_a_loop(
    connect: Connect, make_runner: RunnerFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    import socket

    with socket.socket() as s:  # a loopback port where nothing listens
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    async with sessionmaker() as session:
        await session.execute(update(EmailAccount).where(EmailAccount.id == account.id).values(imap_port=closed))
        await session.execute(
            update(MailboxSync).where(MailboxSync.account_id == account.id).values(next_poll_at=utcnow())
        )
        await session.commit()
    runner = make_runner()
    await runner.lease_round()
    runner.start()
    await asyncio.sleep(3)  # the loops run for real: one attempt, then the next is a backoff away
    status = await sync_row(sessionmaker, account.id)
    assert status.status == "failing" and status.last_error_code == "imap.connection_refused"
    assert status.consecutive_failures == 1
    assert (status.next_poll_at - utcnow()).total_seconds() > 60
    # each failure doubles the wait (with jitter), capped
    mailbox = runner.held[account.id]
    waits = []
    for _ in range(4):
        mailbox.next_poll_at = utcnow()
        await runner.poll_now(account.id)
        waits.append((mailbox.next_poll_at - utcnow()).total_seconds())
    # the fifth failure would wait 16 x 120 s = 1920 s: capped at 1800 s, jitter included
    assert waits[0] > 0.8 * 2 * 120 and waits[-1] > 0.8 * 1800 - 5 and waits[-1] <= 1800 + 1
    assert runner.book.opened == 0


async def test_the_password_is_decrypted_when_a_connection_opens_not_per_poll(
    connect: Connect, make_runner: RunnerFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    runner = make_runner()
    await runner.lease_round()
    for _ in range(5):
        await runner.poll_now(account.id)

    async def decrypts() -> int:
        async with sessionmaker() as session:
            n = await session.scalar(
                select(func.count()).where(
                    CredentialAccess.account_id == account.id, CredentialAccess.purpose == "sync"
                )
            )
            return int(n or 0)

    assert await decrypts() == 1 and runner.book.opened == 1


def test_the_backoff_never_waits_longer_than_its_cap() -> None:
    import random

    from nimbus_api.sync.status import backoff_delay

    rng = random.Random(7)
    for failures in range(1, 12):
        waits = [backoff_delay(120, failures, 1800.0, rng) for _ in range(500)]
        raw = min(120 * 2 ** (failures - 1), 1800)
        assert all(120 <= w <= 1800 for w in waits)
        assert all(w >= min(0.8 * raw, 1800) for w in waits) if failures > 1 else waits == [120.0] * 500
    capped = [backoff_delay(120, 9, 1800.0, rng) for _ in range(500)]
    assert min(capped) >= 1440 and max(capped) <= 1800 and len(set(capped)) > 100  # still spread below the cap
