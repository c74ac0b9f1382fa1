"""Faults with real processes: ``nimbus worker`` subprocesses sending to an SMTP sink in another process.

* a worker SIGKILLed mid-campaign loses nothing, and whatever reached the sink twice is recorded ``unknown``;
* a Redis wiped (FLUSHDB of the test's own index) mid-campaign loses nothing and duplicates nothing;
* four workers racing over two inboxes never spend a budget twice, and each connection's pace holds.

Dispatch and sweep are crons of the workers (every 5 s / 30 s); to keep the run short the test also
enqueues ``dispatch_tick`` / ``sweep_tick`` jobs, which the real workers run exactly as the crons would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.kit.db import utc_day
from nimbus_api.models import Campaign, Contact, EmailAccount, Enrollment, Message
from nimbus_api.models.message import AccountDailyUsage
from nimbus_api.sending.tasks import QUEUE_NAME
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.sink_process import SinkProcess, SinkRecord

ROOT = Path(__file__).resolve().parents[2]
NIMBUS = ROOT / ".venv" / "bin" / "nimbus"
TERMINAL = {"sent", "unknown", "failed", "expired", "suppressed"}


# --- processes -----------------------------------------------------------------------------------------


class Workers:
    """``nimbus worker`` subprocesses; every one still running is SIGKILLed by ``kill_all``."""

    def __init__(self, settings: Settings, directory: Path, **env: str) -> None:
        assert settings.database_url and settings.redis_url
        self.directory = directory
        self.env = {
            **os.environ,
            "NIMBUS_DATABASE_URL": settings.database_url,
            "NIMBUS_REDIS_URL": settings.redis_url,
            "NIMBUS_MASTER_KEYS": ",".join(k.get_secret_value() for k in settings.master_keys),
            "NIMBUS_DNS_NAMESERVERS": ",".join(settings.dns_nameservers),
            "NIMBUS_EGRESS_ALLOW": ",".join(settings.egress_allow),
            "NIMBUS_EXTRA_CA_FILE": str(settings.extra_ca_file),
            "NIMBUS_LOG_LEVEL": "info",
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.directory / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([str(NIMBUS), "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
                proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.directory.glob("worker-*.log")))


def pids_connected_to(port: int, pids: list[int]) -> list[int]:
    """The processes among ``pids`` holding a TCP connection to 127.0.0.1:``port`` (Linux /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED to the sink
                inodes.add(fields[9])
    found = []
    for pid in pids:
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            found.append(pid)
    return found


@pytest.fixture
def sink(mail_world: MailWorld, tmp_path: Path) -> Iterator[SinkProcess]:
    certs = mail_world.certs
    with SinkProcess(certs.server_cert, certs.server_key, tmp_path / "sink.log", delay=0.01) as process:
        yield process


@pytest.fixture
async def arq(settings: Settings) -> AsyncIterator[ArqRedis]:
    assert settings.redis_url
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    yield pool
    await pool.aclose()


async def enqueue(arq: ArqRedis, function: str) -> None:
    await arq.enqueue_job(function, _job_id=f"test:{function}:{secrets.token_hex(4)}", _queue_name=QUEUE_NAME)


# --- data ----------------------------------------------------------------------------------------------


async def sending_campaign(
    campaigns: Campaigns,
    sink: SinkProcess,
    *,
    inboxes: int | list[uuid.UUID],
    contacts: int | list[str],
    daily_send_limit: int,
    max_connections: int,
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Inboxes connected through the API (or those given), then pointed at the sink; a campaign with
    ``contacts`` (that many, or these addresses) due now."""
    sm, workspace_id = campaigns.sm, campaigns.tenant.workspace_id
    accounts = [await campaigns.inbox() for _ in range(inboxes)] if isinstance(inboxes, int) else inboxes
    campaign_id = await campaigns.campaign(accounts, [])
    async with sm() as session, session.begin():
        # Only this test's campaign is active: the workers dispatch every active campaign of the database.
        await session.execute(
            update(Campaign).where(Campaign.status == "active", Campaign.id != campaign_id).values(status="paused")
        )
        await session.execute(
            update(EmailAccount)
            .where(EmailAccount.id.in_(accounts))
            .values(
                smtp_host="127.0.0.1",
                smtp_port=sink.port,
                daily_send_limit=daily_send_limit,
                daily_new_contacts_limit=None,
                min_send_interval_seconds=0,
                max_connections=max_connections,
                credentials_version=EmailAccount.credentials_version + 1,
            )
        )
        tag = secrets.token_hex(3)
        addresses = [f"c{i}-{tag}@example.org" for i in range(contacts)] if isinstance(contacts, int) else contacts
        rows = [
            {"id": uuid.uuid4(), "workspace_id": workspace_id, "email": a, "first_name": "Grace"} for a in addresses
        ]
        await session.execute(insert(Contact), rows)
        due = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(
            insert(Enrollment),
            [
                {
                    "workspace_id": workspace_id,
                    "campaign_id": campaign_id,
                    "contact_id": row["id"],
                    "next_send_at": due,
                    "unsubscribe_token": secrets.token_urlsafe(24),
                }
                for row in rows
            ],
        )
    return campaign_id, accounts


async def states(sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID) -> Counter[str]:
    async with sm() as session:
        rows = await session.execute(
            select(Message.state, func.count()).where(Message.campaign_id == campaign_id).group_by(Message.state)
        )
        return Counter(dict(rows.all()))


async def wait_until(check: Any, timeout: float, what: str, workers: Workers, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{workers.logs()}")
        await asyncio.sleep(every)


async def all_terminal(sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID, expected: int) -> bool:
    seen = await states(sm, campaign_id)
    return sum(seen.values()) == expected and set(seen) <= TERMINAL


async def message_states(sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID) -> dict[str, str]:
    async with sm() as session:
        rows = await session.execute(
            select(Message.message_id_header, Message.state).where(Message.campaign_id == campaign_id)
        )
        return dict(rows.all())


async def assert_every_enrollment_has_a_terminal_first_message(
    sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID, contacts: int
) -> None:
    async with sm() as session:
        missing = await session.scalar(
            text(
                "SELECT count(*) FROM enrollments e WHERE e.campaign_id = :c AND NOT EXISTS "
                "(SELECT 1 FROM messages m WHERE m.enrollment_id = e.id AND m.step = 0)"
            ),
            {"c": campaign_id},
        )
        doubled = await session.scalar(
            text(
                "SELECT count(*) FROM (SELECT enrollment_id FROM messages WHERE campaign_id = :c AND step = 0 "
                "GROUP BY enrollment_id HAVING count(*) > 1) x"
            ),
            {"c": campaign_id},
        )
        enrollments = await session.scalar(select(func.count()).where(Enrollment.campaign_id == campaign_id))
    assert enrollments == contacts
    assert missing == 0, f"{missing} enrollments lost their first message"
    assert doubled == 0


def deliveries(records: list[SinkRecord]) -> Counter[str]:
    return Counter(r.message_id for r in records)


# --- tests ---------------------------------------------------------------------------------------------


async def test_a_worker_killed_mid_campaign_loses_nothing_and_duplicates_only_unknown(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    contacts, inboxes, lanes = 1000, 4, 2
    campaign_id, _ = await sending_campaign(
        campaigns, sink, inboxes=inboxes, contacts=contacts, daily_send_limit=10_000, max_connections=lanes
    )
    workers = Workers(
        settings,
        tmp_path,
        NIMBUS_SMTP_RATE_PER_CONNECTION="0",
        NIMBUS_SEND_LEASE_SECONDS="10",
        NIMBUS_SEND_BATCH=str(contacts),
    )
    try:
        first, second = workers.start(), workers.start()
        await enqueue(arq, "dispatch_tick")

        async def under_way() -> bool:
            return len(sink.records()) >= 60

        await wait_until(under_way, 30, "sends to be under way", workers, every=0.02)
        sending = pids_connected_to(sink.port, [first.pid, second.pid])
        victim = first if not sending or first.pid in sending else second
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=5)
        killed_at, delivered_at_kill = time.monotonic(), len(sink.records())
        in_flight = (await states(sessionmaker, campaign_id))["leased"]
        workers.start()  # the replacement

        async def finished() -> bool:
            # The sweep cron runs every 30 s; once the dead worker's leases (10 s) have expired, ask the
            # workers for a sweep every 2 s rather than waiting for it.
            if time.monotonic() - killed_at > 10.5:
                await enqueue(arq, "sweep_tick")
            return await all_terminal(sessionmaker, campaign_id, contacts)

        await wait_until(finished, 45, "every message to be terminal", workers, every=2.0)
    finally:
        workers.kill_all()

    await assert_every_enrollment_has_a_terminal_first_message(sessionmaker, campaign_id, contacts)
    by_header = await message_states(sessionmaker, campaign_id)
    counts = deliveries(sink.records())
    duplicates = {mid for mid, n in counts.items() if n > 1}
    assert set(counts) <= set(by_header), "the sink got a message the database does not know"
    assert {by_header[mid] for mid in duplicates} <= {"unknown"}
    for header, state in by_header.items():
        if state == "sent":
            assert counts[header] == 1, f"{header} recorded sent but delivered {counts[header]} times"
        elif state == "unknown":
            assert counts[header] <= 1, "an unknown message was resent"
        else:
            assert counts[header] == 0
    seen = Counter(by_header.values())
    assert seen["sent"] + seen["unknown"] == contacts
    # At most one chunk per connection of the dead worker is unknown (started together, then recorded).
    assert seen["unknown"] <= inboxes * lanes * settings.send_commit_every
    with capsys.disabled():
        print(
            f"\n[kill] pid={victim.pid} delivered_at_kill={delivered_at_kill} leased_at_kill={in_flight} "
            f"states={dict(seen)} deliveries={sum(counts.values())} duplicates={len(duplicates)}"
        )


async def test_redis_wiped_mid_campaign_delivers_every_message_exactly_once(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    redis: Redis,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    contacts = 200
    campaign_id, _ = await sending_campaign(
        campaigns, sink, inboxes=2, contacts=contacts, daily_send_limit=10_000, max_connections=1
    )
    # Dispatch in two ticks (100 each): the wipe hits between queued work and its wake-ups.
    workers = Workers(settings, tmp_path, NIMBUS_SMTP_RATE_PER_CONNECTION="0", NIMBUS_SEND_BATCH="100")
    try:
        workers.start(), workers.start()
        await enqueue(arq, "dispatch_tick")

        async def under_way() -> bool:
            return len(sink.records()) >= 30

        await wait_until(under_way, 30, "sends to be under way", workers, every=0.02)
        await redis.flushdb()  # the test's own Redis index only (the ``redis_url`` fixture's)
        delivered_at_wipe = len(sink.records())
        wiped_at = time.monotonic()

        async def finished() -> bool:
            if time.monotonic() - wiped_at > 1:
                await enqueue(arq, "sweep_tick")
                await enqueue(arq, "dispatch_tick")
            return await all_terminal(sessionmaker, campaign_id, contacts) and len(sink.records()) >= contacts

        await wait_until(finished, 40, "every message to be sent", workers, every=2.0)
    finally:
        workers.kill_all()

    await assert_every_enrollment_has_a_terminal_first_message(sessionmaker, campaign_id, contacts)
    by_header = await message_states(sessionmaker, campaign_id)
    counts = deliveries(sink.records())
    assert Counter(by_header.values()) == {"sent": contacts}
    assert set(counts) == set(by_header)
    assert set(counts.values()) == {1}, "a message was delivered twice"
    with capsys.disabled():
        print(f"\n[flush] delivered_at_wipe={delivered_at_wipe} sent={contacts} deliveries={sum(counts.values())}")


async def test_four_workers_hold_budgets_and_pace(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    contacts, limit, rate = 100, 25, 5
    campaign_id, accounts = await sending_campaign(
        campaigns, sink, inboxes=2, contacts=contacts, daily_send_limit=limit, max_connections=1
    )
    workers = Workers(settings, tmp_path, NIMBUS_SMTP_RATE_PER_CONNECTION=str(rate))
    try:
        for _ in range(4):
            workers.start()
        for _ in range(4):  # four dispatchers racing for the same budgets
            await enqueue(arq, "dispatch_tick")

        async def budgets_spent() -> bool:
            seen = await states(sessionmaker, campaign_id)
            return seen["sent"] >= 2 * limit and not (seen["queued"] or seen["leased"])

        await wait_until(budgets_spent, 40, "both budgets to be spent", workers, every=0.25)
        for _ in range(4):  # more ticks find nothing left to spend
            await enqueue(arq, "dispatch_tick")
        await asyncio.sleep(1.5)
    finally:
        workers.kill_all()

    seen = await states(sessionmaker, campaign_id)
    assert seen == {"sent": 2 * limit}
    async with sessionmaker() as session:
        usage = dict(
            (
                await session.execute(
                    select(AccountDailyUsage.account_id, AccountDailyUsage.sends).where(
                        AccountDailyUsage.account_id.in_(accounts), AccountDailyUsage.day == utc_day(datetime.now(UTC))
                    )
                )
            ).all()
        )
        emails = dict(
            (
                await session.execute(select(EmailAccount.email, EmailAccount.id).where(EmailAccount.id.in_(accounts)))
            ).all()
        )
    assert usage == dict.fromkeys(accounts, limit)
    records = sink.records()
    per_sender: dict[str, list[float]] = defaultdict(list)
    for record in records:
        per_sender[record.sender].append(record.at)
    assert {emails[s]: len(ts) for s, ts in per_sender.items()} == dict.fromkeys(accounts, limit)
    assert set(deliveries(records).values()) == {1}
    tightest = {}
    for sender, times in per_sender.items():
        times.sort()
        # No half-open one-second window holds more than ``rate`` sends: each send is at least 1 s after
        # the send ``rate`` places before it (MAIL FROM times as the sink saw them).
        gaps = [times[i + rate] - times[i] for i in range(len(times) - rate)]
        tightest[sender] = min(gaps)
        assert min(gaps) >= 1.0, f"{sender}: {rate + 1} sends within {min(gaps):.3f} s"
    with capsys.disabled():
        print(f"\n[budgets] sent={seen['sent']} usage={sorted(usage.values())} tightest_{rate + 1}_span={tightest}")
