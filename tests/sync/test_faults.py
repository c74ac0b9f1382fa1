"""The sync with real ``nimbus worker`` processes: a worker killed with SIGKILL in the middle of fetching
and storing, another taking over its mailboxes once their leases expire; afterwards every message is stored
exactly once, every bounce counted exactly once, and at no moment did two workers read one mailbox
(counted at the server: Dovecot's list of connected sessions, sampled throughout)."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.kit.db import utcnow
from nimbus_api.models import AccountDailyUsage, Event, InboundMessage, MailboxSync, Message
from nimbus_api.sending.sender import SenderDeps, run_inbox
from tests.conftest import Tenant
from tests.inbox.conftest import dsn_report
from tests.sending.conftest import Campaigns, campaigns, deps, pool  # noqa: F401 - fixtures
from tests.sending.fleet import Workers
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import connect_inboxes, mail, park_others

MAILBOXES = 8
PLAIN = 12  # messages per mailbox besides the bounce reports
FILLER = b"x" * 120_000  # big enough that fetching takes a while: the kill lands mid-poll
ENV = {
    "NIMBUS_SYNC_ENABLED": "true",
    "NIMBUS_SYNC_LEASE_SECONDS": "6",
    "NIMBUS_SYNC_CONCURRENCY": "2",
    "NIMBUS_WEBHOOK_DISPATCHER": "false",
}


class SessionWatch:
    """Samples ``doveadm who`` every 50 ms and keeps the most IMAP sessions any one user had at once."""

    def __init__(self, world: MailWorld, users: set[str]) -> None:
        self.world, self.users = world, users
        self.most: Counter[str] = Counter()
        #: the sessions of the latest sample
        self.now: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = self.world.dovecot.doveadm("who", "-1")
            except Exception:  # the sample is skipped, not the test
                continue
            now: Counter[str] = Counter()
            for line in text.splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 2 and parts[1] == "imap" and parts[0] in self.users:
                    now[parts[0]] += 1
            for user, n in now.items():
                self.most[user] = max(self.most[user], n)
            self.now = now
            self.samples += 1
            time.sleep(0.05)

    async def drained(self, timeout: float) -> bool:
        """Wait until a later sample shows no session of these users (a killed client's sessions stay
        listed until Dovecot reads the closed socket, later on a loaded machine)."""
        deadline = time.monotonic() + timeout
        start = self.samples
        while time.monotonic() < deadline:
            if self.samples > start and not +self.now:
                return True
            await asyncio.sleep(0.05)
        return False

    def __enter__(self) -> SessionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def _stored(sessionmaker: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(InboundMessage).where(InboundMessage.account_id.in_(ids))
            )
            or 0
        )


async def test_a_killed_sync_worker_loses_nothing_and_doubles_nothing(
    tenant: Tenant,
    campaigns: Campaigns,  # noqa: F811
    deps: SenderDeps,  # noqa: F811
    mail_world: MailWorld,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    emails, inboxes = await connect_inboxes(tenant, sessionmaker, MAILBOXES, "fault", daily_send_limit=1000)
    # step 1 of a campaign, really sent, three recipients per inbox
    contacts = [f"c{i}-{secrets.token_hex(3)}@example.org" for i in range(3 * MAILBOXES)]
    campaign_id = await campaigns.campaign(inboxes, contacts)
    await campaigns.dispatch(campaign_id)
    for inbox in inboxes:
        await run_inbox(deps, inbox, max_seconds=20)
    sent = [m for m in await campaigns.messages(campaign_id) if m.state == "sent"]
    assert len(sent) == len(contacts)
    by_id = dict(zip(inboxes, emails, strict=True))
    # each mailbox: a bounce report for each of its sent messages, and a dozen big ordinary messages
    for message in sent:
        assert message.account_id is not None
        email = by_id[message.account_id]
        mail_world.dovecot.deliver_lmtp(email, dsn_report(email, message.to_email, message))
    for email in emails:
        for n in range(PLAIN):
            mail_world.dovecot.deliver_lmtp(email, mail(f"note {n}") + FILLER)
    expected = len(sent) + PLAIN * MAILBOXES
    await park_others(sessionmaker, tenant.workspace_id)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(MailboxSync).where(MailboxSync.account_id.in_(inboxes)).values(next_poll_at=utcnow())
        )

    workers = Workers(settings, tmp_path, **ENV)
    try:
        with SessionWatch(mail_world, set(emails)) as watch:
            first = workers.start()
            deadline = time.monotonic() + 60
            while await _stored(sessionmaker, inboxes) == 0:
                assert time.monotonic() < deadline, workers.logs()
                await asyncio.sleep(0.02)
            first.kill()  # SIGKILL: in the middle of the first polls (some stored, others mid-fetch)
            first.wait(timeout=10)
            at_kill = await _stored(sessionmaker, inboxes)
            assert at_kill < expected, "the kill came too late to interrupt anything"
            # one worker so far: never two sessions on one mailbox; then the dead worker's sessions must
            # leave Dovecot's list before the survivors start, or they would be counted as theirs
            assert max(watch.most.values(), default=0) <= 1, watch.most
            assert await watch.drained(15), watch.now
            watch.most.clear()
            workers.start()
            workers.start()
            deadline = time.monotonic() + 90
            while await _stored(sessionmaker, inboxes) < expected:
                assert time.monotonic() < deadline, (await _stored(sessionmaker, inboxes), workers.logs())
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # anything stored twice would show now
        assert watch.samples > 20
        assert max(watch.most.values()) == 1, watch.most  # never two sessions on one mailbox
    finally:
        workers.kill_all()

    assert await _stored(sessionmaker, inboxes) == expected
    async with sessionmaker() as session:
        per_account = dict(
            (
                await session.execute(
                    select(InboundMessage.account_id, func.count())
                    .where(InboundMessage.account_id.in_(inboxes))
                    .group_by(InboundMessage.account_id)
                )
            ).all()
        )
        bounced = Counter(
            e.payload["data"]["message_id"]
            for e in await session.scalars(
                select(Event).where(Event.workspace_id == tenant.workspace_id, Event.type == "message.bounced")
            )
        )
        counted = await session.scalar(
            select(func.sum(AccountDailyUsage.bounces)).where(AccountDailyUsage.account_id.in_(inboxes))
        )
        states = Counter(
            await session.scalars(select(Message.state).where(Message.campaign_id == campaign_id, Message.step == 0))
        )
    sends_per_inbox = Counter(m.account_id for m in sent)
    assert per_account == {i: PLAIN + sends_per_inbox[i] for i in inboxes}
    assert sorted(bounced) == sorted(str(m.id) for m in sent) and set(bounced.values()) == {1}
    assert counted == len(sent) and states == {"bounced": len(sent)}
