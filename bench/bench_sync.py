"""Benchmark: the IMAP sync against a private Dovecot, in the same run as a raw aioimaplib baseline.

1. **One sync cycle over 500 mailboxes, 10 % with one new message**: the product (``SyncRunner``, the same
   object a worker runs: leases in PostgreSQL, persistent connections, STATUS of INBOX and Junk, the new
   message fetched with BODY.PEEK[], classified, matched and stored with its cursor, the poll's status
   recorded) against a raw aioimaplib script on 500 persistent connections doing STATUS of the same two
   folders and fetching the same number of new messages (no database). Wall time and this process's CPU,
   each side's median over alternated runs. Target: product speed at least 0.5x raw.
2. **Idle cost**: 1,000 mailboxes polled every 30 s with no new mail, the runner's real loops running
   (spread over the interval as in production): CPU of this process per minute of wall time, and of
   PostgreSQL's processes, over one 30 s interval. Target: under 10 % of one core (6 CPU-seconds per minute).

Both sides use cleartext IMAP on loopback (mode ``none``), so neither pays TLS on top of the protocol.
Invariant checked (fatal): every new message stored exactly once. A missed speed or CPU target is printed,
not fatal (shared machines are noisy).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import aioimaplib
import asyncpg
from sqlalchemy import delete, func, select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.certs import make_test_certs
from tests.servers.dovecot import Dovecot

from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import MasterKeyring, Secret, generate_master_key
from nimbus_api.kit.db import make_engine, make_sessionmaker, utcnow
from nimbus_api.kit.egress import EgressPolicy, make_resolver
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.kit.net import NetContext, make_tls_context
from nimbus_api.logging import configure_logging
from nimbus_api.models import Domain, EmailAccount, InboundMessage, MailboxSync
from nimbus_api.sync.runner import SyncConfig, SyncRunner
from nimbus_api.workspaces import service as workspaces

ADMIN = os.environ.get("NIMBUS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
CYCLE_MAILBOXES = int(os.environ.get("NIMBUS_BENCH_SYNC_MAILBOXES", "500"))
IDLE_MAILBOXES = int(os.environ.get("NIMBUS_BENCH_SYNC_IDLE_MAILBOXES", "1000"))
IDLE_SECONDS = float(os.environ.get("NIMBUS_BENCH_SYNC_IDLE_SECONDS", "30"))  # one full interval
RUNS = 3
NEW_SHARE = 0.10
PASSWORD = "bench-imap-password"
TARGET_RATIO = 0.5
TARGET_IDLE_CPU = 6.0  # CPU-seconds per minute: 10 % of one core


class BenchDovecot(Dovecot):
    """The test suite's private Dovecot, with room for a thousand sessions at once."""

    def _config(self) -> str:
        return super()._config() + (
            "default_process_limit = 3000\ndefault_client_limit = 5000\n"
            "service imap {\n  process_limit = 3000\n}\n"
            "service imap-login {\n  process_limit = 3000\n  client_limit = 5000\n}\n"
        )


def message(n: int, user: str) -> bytes:
    return (
        f"From: Prospect {n} <prospect{n}@example.org>\r\nTo: {user}\r\nSubject: Re: our call {n}\r\n"
        f"Message-ID: <bench-{n}-{secrets.token_hex(6)}@example.org>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
        f"In-Reply-To: <nothing-we-sent-{n}@bench.example>\r\n\r\nSounds good, talk Tuesday.\r\n\r\n> earlier text\r\n"
    ).encode()


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


async def seed(dsn: str, vault: Vault, dovecot: Dovecot, count: int, label: str) -> list[tuple[uuid.UUID, str]]:
    engine = make_engine(dsn)
    sm = make_sessionmaker(engine)
    users = [f"{label}{i}@bench.example" for i in range(count)]
    for n, user in enumerate(users):
        dovecot.add_user(user, PASSWORD)
        if n % 250 == 249:
            print(f"  {n + 1}/{count} Dovecot users", flush=True)
    out = []
    async with sm() as session, session.begin():
        ws = await workspaces.create_workspace(session, vault, f"bench-{label}-{secrets.token_hex(3)}")
        domain = Domain(workspace_id=ws.id, name="bench.example")
        session.add(domain)
        await session.flush()
        for user in users:
            account = EmailAccount(
                workspace_id=ws.id,
                domain_id=domain.id,
                email=user,
                smtp_host="127.0.0.1",
                smtp_port=25,
                smtp_mode="none",
                imap_host="127.0.0.1",
                imap_port=dovecot.ports.imap,
                imap_mode="none",
                imap_username=user,
                imap_folder="INBOX",
                imap_allow_plaintext_auth=True,
                campaign_types=["cold"],
                sync_interval_seconds=30,
            )
            session.add(account)
            await session.flush()
            await vault.store(
                session, workspace_id=ws.id, account_id=account.id, kind="imap_password", secret=Secret(PASSWORD)
            )
            session.add(
                MailboxSync(
                    account_id=account.id,
                    workspace_id=ws.id,
                    status="pending",
                    next_poll_at=utcnow(),
                    consecutive_failures=0,
                    messages_stored=0,
                )
            )
            out.append((account.id, user))
    await engine.dispose()
    return out


def net_for(dovecot: Dovecot, certs_ca: Path) -> NetContext:
    return NetContext(
        policy=EgressPolicy.from_entries(["127.0.0.0/8", f":{dovecot.ports.imap}"]),
        resolver=make_resolver(["127.0.0.1:53"], 2.0),
        tls=make_tls_context(certs_ca),
        connect_timeout=10.0,
        command_timeout=30.0,
    )


def config(**overrides: object) -> SyncConfig:
    values: dict[str, object] = {
        "capacity": 5000,
        "concurrency": 64,
        "lease_seconds": 45.0,
        "max_message_bytes": 2 * 1024 * 1024,
        "window_days": 14,
        "idle_close_seconds": 900.0,
        "backoff_max_seconds": 1800.0,
    }
    values.update(overrides)
    return SyncConfig(**values)  # type: ignore[arg-type]


async def stored(sm: object, ids: list[uuid.UUID]) -> int:
    async with sm() as session:  # type: ignore[operator]
        n = await session.scalar(
            select(func.count()).select_from(InboundMessage).where(InboundMessage.account_id.in_(ids))
        )
        return int(n or 0)


# --- raw baseline ----------------------------------------------------------------------------------------


class Raw:
    """aioimaplib on persistent connections: STATUS INBOX and Junk, fetch what is new. No database."""

    def __init__(self, port: int, users: list[str]) -> None:
        self.port, self.users = port, users
        self.clients: dict[str, aioimaplib.IMAP4] = {}
        self.uidnext: dict[str, int] = {}

    async def connect(self) -> None:
        sem = asyncio.Semaphore(64)

        async def one(user: str) -> None:
            async with sem:
                client = aioimaplib.IMAP4(host="127.0.0.1", port=self.port, timeout=30)
                await client.wait_hello_from_server()
                await client.login(user, PASSWORD)
                self.clients[user] = client
                self.uidnext[user] = await self._uidnext(client, "INBOX")

        await asyncio.gather(*(one(u) for u in self.users))

    @staticmethod
    async def _uidnext(client: aioimaplib.IMAP4, folder: str) -> int:
        reply = await client.status(folder, "(UIDVALIDITY UIDNEXT MESSAGES)")
        text = b" ".join(bytes(line) for line in reply.lines).decode()
        return int(text.split("UIDNEXT ")[1].split()[0].rstrip(")"))

    async def cycle(self) -> int:
        sem = asyncio.Semaphore(64)
        fetched = 0

        async def one(user: str) -> None:
            nonlocal fetched
            async with sem:
                client = self.clients[user]
                uidnext = await self._uidnext(client, "INBOX")
                await self._uidnext(client, "Junk")
                if uidnext > self.uidnext[user]:
                    await client.select("INBOX")  # aioimaplib enters SELECTED only after SELECT
                    reply = await client.uid("fetch", f"{self.uidnext[user]}:*", "(UID BODY.PEEK[])")
                    fetched += sum(1 for line in reply.lines if isinstance(line, bytearray))
                    await client.close()
                    self.uidnext[user] = uidnext

        await asyncio.gather(*(one(u) for u in self.users))
        return fetched

    async def close(self) -> None:
        for client in self.clients.values():
            try:
                await client.logout()
            except Exception:  # the baseline's teardown is not measured
                continue


# --- the two measurements --------------------------------------------------------------------------------


async def cycle_bench(dsn: str, vault: Vault, dovecot: Dovecot, net: NetContext) -> None:
    print(f"\n[1] one sync cycle over {CYCLE_MAILBOXES} mailboxes, {NEW_SHARE:.0%} with one new message", flush=True)
    accounts = await seed(dsn, vault, dovecot, CYCLE_MAILBOXES, "cycle")
    ids = [a for a, _ in accounts]
    users = [u for _, u in accounts]
    engine = make_engine(dsn, pool_size=20, max_overflow=0)
    sm = make_sessionmaker(engine)
    runner = SyncRunner(sm, net, vault, config(), owner=f"bench-{secrets.token_hex(3)}")
    raw = Raw(dovecot.ports.imap, users)
    try:
        await runner.lease_round()
        assert len(runner.held) == CYCLE_MAILBOXES, len(runner.held)
        t = time.monotonic()
        await runner.run_due()  # first poll: connections opened, cursors set (not timed)
        print(
            f"  product: {runner.book.opened} connections opened and first poll in {time.monotonic() - t:.1f} s"
            f" ({runner.stats.failures} failed: {runner.stats.errors})"
        )
        await runner.lease_round()  # the lease loop renews every 15 s; here it runs between the steps
        t = time.monotonic()
        await raw.connect()
        print(f"  raw: {len(raw.clients)} connections opened in {time.monotonic() - t:.1f} s", flush=True)
        opened = runner.book.opened
        product_times, product_cpu, raw_times, raw_cpu = [], [], [], []
        expected = 0
        step = int(1 / NEW_SHARE)
        for run in range(RUNS):
            # one new message in every tenth mailbox; both sides then read it (each with its own cursor)
            targets = users[run % step :: step]
            for n, user in enumerate(targets):
                dovecot.deliver_lmtp(user, message(n, user))  # as an MTA delivers: indexes updated
            for side in ("raw", "product") if run % 2 == 0 else ("product", "raw"):
                if side == "product":
                    expected += len(targets)
                    await runner.lease_round()  # what the lease loop does every 15 s (not timed)
                    assert len(runner.held) == CYCLE_MAILBOXES, len(runner.held)
                    now = utcnow()
                    for mailbox in runner.held.values():
                        mailbox.next_poll_at = now
                    c0, t0 = time.process_time(), time.perf_counter()
                    polls = await runner.run_due()
                    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                    assert polls == CYCLE_MAILBOXES, polls
                    got = await stored(sm, ids)
                    assert got == expected, f"stored {got}, expected {expected}; failures {runner.stats.errors}"
                    product_times.append(elapsed)
                    product_cpu.append(cpu)
                else:
                    c0, t0 = time.process_time(), time.perf_counter()
                    fetched = await raw.cycle()
                    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                    assert fetched == len(targets), fetched
                    raw_times.append(elapsed)
                    raw_cpu.append(cpu)
                print(f"  run {run + 1} {side:7s}: {elapsed * 1000:7.1f} ms wall, {cpu * 1000:7.1f} ms CPU", flush=True)
        assert runner.book.opened == opened, "the product reconnected during the measured cycles"
        p, r = statistics.median(product_times), statistics.median(raw_times)
        ratio = r / p
        print(
            f"  product: {p * 1000:.0f} ms wall, {statistics.median(product_cpu) * 1000:.0f} ms CPU per cycle "
            f"({CYCLE_MAILBOXES / p:.0f} mailboxes/s)"
        )
        print(f"  raw aioimaplib: {r * 1000:.0f} ms wall, {statistics.median(raw_cpu) * 1000:.0f} ms CPU per cycle")
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"  speed ratio product/raw: {ratio:.2f} (target {TARGET_RATIO}: {verdict})", flush=True)
    finally:
        await raw.close()
        await runner.stop()
        await engine.dispose()


async def idle_bench(dsn: str, vault: Vault, dovecot: Dovecot, net: NetContext) -> None:
    print(f"\n[2] idle: {IDLE_MAILBOXES} mailboxes every 30 s, no new mail, {IDLE_SECONDS:.0f} s measured", flush=True)
    engine0 = make_engine(dsn)
    async with make_sessionmaker(engine0)() as session, session.begin():
        await session.execute(delete(MailboxSync))  # the cycle's mailboxes are not read any more
    await engine0.dispose()
    accounts = await seed(dsn, vault, dovecot, IDLE_MAILBOXES, "idle")
    ids = [a for a, _ in accounts]
    engine = make_engine(dsn, pool_size=10, max_overflow=0)
    sm = make_sessionmaker(engine)
    runner = SyncRunner(sm, net, vault, config(), owner=f"bench-idle-{secrets.token_hex(3)}")
    try:
        # spread the first polls over the interval, as new mailboxes are (``mailboxes.spread_offset``)
        async with sm() as session, session.begin():
            for n, account_id in enumerate(ids):
                await session.execute(
                    update(MailboxSync)
                    .where(MailboxSync.account_id == account_id)
                    .values(next_poll_at=utcnow() + timedelta(seconds=30 * n / len(ids)))
                )
        await runner.lease_round()
        runner.start()
        warm = time.monotonic() + 300  # every mailbox connected and polled once (logins take a while)
        while (runner.book.opened < len(ids) or runner.stats.polls < len(ids)) and time.monotonic() < warm:  # noqa: ASYNC110
            await asyncio.sleep(1)
        await asyncio.sleep(5)
        print(f"  warmed up: {runner.book.opened} connections, {runner.stats.polls} polls", flush=True)
        opened = runner.book.opened
        polls0, failures0 = runner.stats.polls, runner.stats.failures
        pg = postgres_pids()
        c0, pg0, t0 = time.process_time(), cpu_of(pg), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        wall = time.monotonic() - t0
        cpu, pg_cpu = time.process_time() - c0, cpu_of(pg) - pg0
        polls = runner.stats.polls - polls0
        per_minute = cpu * 60 / wall
        verdict = "met" if per_minute < TARGET_IDLE_CPU else "MISSED"
        print(
            f"  {polls} polls in {wall:.0f} s ({polls * 60 / wall:.0f}/min), {runner.stats.failures - failures0} failed"
        )
        print(
            f"  sync process: {per_minute:.2f} CPU-s per minute = {per_minute / 60:.1%} of one core "
            f"(target < {TARGET_IDLE_CPU / 60:.0%}: {verdict}); {cpu * 1000 / max(polls, 1):.2f} ms CPU per poll"
        )
        print(f"  PostgreSQL: {pg_cpu * 60 / wall:.2f} CPU-s per minute", flush=True)
        print(f"  connections opened while measuring: {runner.book.opened - opened}")
        assert await stored(sm, ids) == 0
    finally:
        await runner.stop()
        await engine.dispose()


async def main() -> None:
    configure_logging("warning", "console")
    name = f"nimbus_bench_sync_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    certs = make_test_certs(Path(tempfile.mkdtemp(prefix="nimbus-bench-sync-")))
    try:
        await asyncio.to_thread(upgrade_head, dsn)
        vault = Vault(MasterKeyring.from_strings([generate_master_key()]))
        with BenchDovecot(certs) as dovecot:
            net = net_for(dovecot, certs.ca_file)
            only = os.environ.get("NIMBUS_BENCH_SYNC_ONLY", "")
            if only in ("", "cycle"):
                await cycle_bench(dsn, vault, dovecot, net)
            if only in ("", "idle"):
                await idle_bench(dsn, vault, dovecot, net)
    finally:
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
