"""Real ``nimbus worker`` processes for the fault tests: starting and killing them, a campaign sent
through them to an SMTP sink in another process, and what the tests check afterwards. The fixtures
``sink`` and ``arq`` are imported by the test modules that use them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.models import Campaign, Contact, EmailAccount, Enrollment, Message
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
            # the fault tests of sending do not read mailboxes; the sync's own fault tests turn it on
            "NIMBUS_SYNC_ENABLED": "false",
            "NIMBUS_DELIVERABILITY_ENABLED": "false",
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
                current_stage=5,  # fully warmed: the stage does not cap daily_send_limit (stages.limits)
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
