"""Benchmark: a 5,000-recipient campaign over 10 inboxes, through the real dispatcher, database, rendering
and sender, against raw aiosmtplib sending pre-built messages over 10 reused connections.

The sink is Postfix's ``smtp-sink`` (C; far ahead of any Python client), on loopback, cleartext and
without AUTH (it has no TLS, and answers AUTH with a non-standard 250), so both sides pay only their own
costs. Pacing is off. The raw side sends the same MIME bytes the product sends (built before its clock
starts), from one process; it runs before and after each product run, and the product is compared with
the median of the raw runs around it.

The product runs as a deployment does: worker processes (``nimbus worker`` runs the same
``dispatch_campaign`` and ``run_inbox``), one of them dispatching as ``dispatch_tick`` does (a batch of
``NIMBUS_SEND_BATCH``, commit, wake the inboxes it fed through Redis, next batch) while every process
sends for its share of the inboxes when woken; the clock runs from the start signal until every message
is sent. It is measured with one worker process and with one per core (three runs: the ratio is their
median); printed: the rates, the ratios to raw, where the CPU went (worker processes vs. PostgreSQL,
smtp-sink and the kernel on the same machine) and PostgreSQL's transactions and rows per message.
Target: the product with one process per core at least 0.60 of the raw rate.

The product's SMTP client pipelines MAIL, RCPT and DATA (RFC 2920) when the server offers PIPELINING, as
smtp-sink and most providers do, and with pacing off sends them with the previous message's final dot (one
round trip per message); raw aiosmtplib sends one command at a time. So that the product's own
overhead stays visible, a second baseline sends the same bytes through the product's SMTP client alone
(pipelined, the same 10 connections, no database) and the product's ratio to it is printed as well.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path

import aiosmtplib
import asyncpg
from redis.asyncio import Redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import MasterKeyring, generate_master_key
from nimbus_api.kit.db import make_engine, make_sessionmaker, open_connections
from nimbus_api.kit.egress import EgressPolicy, make_resolver
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.kit.net import NetContext, make_tls_context
from nimbus_api.models import Campaign, CampaignAccount, CampaignStep, Domain, EmailAccount, Enrollment
from nimbus_api.sending import mime
from nimbus_api.sending.dispatcher import dispatch_campaign
from nimbus_api.sending.sender import SenderDeps, run_inbox
from nimbus_api.smtp.client import Outgoing, SmtpServer, close_gracefully, transmit
from nimbus_api.smtp.client import connect as smtp_connect
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.workspaces import service as workspaces

ADMIN = os.environ.get("NIMBUS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NIMBUS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
WAKE_CHANNEL = "nimbus-bench-wake"
RECIPIENTS = 5000
INBOXES = 10
SINK = "/usr/sbin/smtp-sink"
DEFAULTS = Settings.model_construct()  # the settings' defaults: the bench runs the shipped configuration
BATCH = DEFAULTS.send_batch  # NIMBUS_SEND_BATCH
COMMIT_EVERY = DEFAULTS.send_commit_every  # NIMBUS_SEND_COMMIT_EVERY
TARGET_RUNS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(dsn: str, vault: Vault, port: int, label: str) -> list:  # type: ignore[type-arg]
    engine = make_engine(dsn)
    sm = make_sessionmaker(engine)
    async with sm() as session, session.begin():
        ws = await workspaces.create_workspace(session, vault, label)
        domain = Domain(workspace_id=ws.id, name="bench.example")
        session.add(domain)
        campaign = Campaign(
            workspace_id=ws.id,
            name="bench",
            type="cold",
            status="active",
            send_days=list(range(7)),
            send_start=dtime(0),
            send_end=dtime(23, 59, 59),
        )
        session.add(campaign)
        await session.flush()
        session.add(
            CampaignStep(
                campaign_id=campaign.id,
                position=0,
                delay_seconds=0,
                subject_template="Quick question, {{ contact.first_name }}",
                text_template="Hi {{ contact.first_name }},\n\nA short note for {{ contact.company }}.\n"
                "Unsubscribe: {{ unsubscribe_url }}\n",
            )
        )
        inboxes = []
        for i in range(INBOXES):
            account = EmailAccount(
                workspace_id=ws.id,
                domain_id=domain.id,
                email=f"sender{i}-{label}@bench.example",
                from_name=f"Sender {i}",
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_mode="none",
                smtp_username=None,
                campaign_types=["cold"],
                current_stage=5,  # fully warmed: the stage does not cap the daily limit (stages.limits)
                overall_score=90.0,
                daily_send_limit=100_000,
                max_connections=1,
            )
            session.add(account)
            await session.flush()
            session.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
            inboxes.append(account.id)
        campaign_id = campaign.id
        workspace_id = ws.id
    await engine.dispose()
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        """
        WITH c AS (
          INSERT INTO contacts (id, workspace_id, email, first_name, company, fields, created_at, updated_at)
          SELECT gen_random_uuid(), $1, 'lead' || g || '@example.org', 'Lead' || g, 'Company ' || g, '{}', now(), now()
          FROM generate_series(1, $3::int) g RETURNING id
        )
        INSERT INTO enrollments (id, workspace_id, campaign_id, contact_id, status, next_step, next_send_at,
          unsubscribe_token, created_at, updated_at)
        SELECT gen_random_uuid(), $1, $2, id, 'active', 0, now() - interval '1 second', md5(random()::text || id::text),
          now(), now() FROM c
        """,
        workspace_id,
        campaign_id,
        RECIPIENTS,
    )
    await conn.execute("ANALYZE")
    await conn.close()
    return [campaign_id, inboxes]


async def database_counters(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    row = await conn.fetchrow(
        "SELECT xact_commit AS transactions, tup_inserted AS inserted, tup_updated AS updated, "
        "tup_fetched AS fetched FROM pg_stat_database WHERE datname = current_database()"
    )
    await conn.close()
    return dict(row)


def sink_net(port: int) -> NetContext:
    """The network context of a process that sends to the sink on loopback (allowlisted by port)."""
    return NetContext(
        policy=EgressPolicy.from_entries(["127.0.0.0/8", f":{port}"]),
        resolver=make_resolver([], 2.0),
        tls=make_tls_context(),
        connect_timeout=5,
        command_timeout=30,
    )


def machine_cpu() -> tuple[int, int]:
    """Jiffies of all CPUs: (total, idle + iowait), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def machine_cpu_since(before: tuple[int, int]) -> tuple[float, float]:
    """CPU seconds the machine was busy since ``before``, and CPU seconds there were (cores x wall)."""
    total, idle = machine_cpu()
    tick = os.sysconf("SC_CLK_TCK")
    return (total - before[0] - (idle - before[1])) / tick, (total - before[0]) / tick


def worker_process(
    dsn: str, master_key: str, port: int, inboxes: list[str], campaign_id: str, dispatcher: bool, go, report
) -> None:  # type: ignore[no-untyped-def]
    """One worker process, as ``nimbus worker`` runs them: senders for its share of the inboxes and, in
    one of them, the dispatcher. Waits for ``go``; puts (sent, dispatch seconds) on ``report``."""
    asyncio.run(_worker(dsn, master_key, port, inboxes, campaign_id, dispatcher, go, report))


async def _worker(dsn, master_key, port, inboxes, campaign_id, dispatcher, go, report) -> None:  # type: ignore[no-untyped-def]
    vault = Vault(MasterKeyring.from_strings([master_key]))
    net = sink_net(port)
    engine = make_engine(dsn, pool_size=len(inboxes) + 2, max_overflow=5)
    sm = make_sessionmaker(engine)
    await open_connections(engine, len(inboxes) + 2)  # as ``nimbus worker`` does when it starts
    # Wake-ups as in a deployment: the dispatcher commits a batch, then signals the inboxes that got
    # messages (``sending.wakeups`` enqueues their arq jobs; here a Redis channel), and a woken sender runs
    # until its inbox has nothing due.
    redis = Redis.from_url(REDIS_URL)
    channel = f"{WAKE_CHANNEL}:{campaign_id}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    report.put(("ready", 0, 0.0, 0.0))
    await asyncio.to_thread(go.wait)
    start, cpu_start = time.perf_counter(), time.process_time()
    dispatch_seconds = 0.0

    wakes = {uuid.UUID(i): asyncio.Event() for i in inboxes}
    finished = asyncio.Event()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            data = message["data"].decode()
            if data == "done":
                finished.set()
                for event in wakes.values():
                    event.set()
                return
            for inbox_id in data.split(","):
                event = wakes.get(uuid.UUID(inbox_id))
                if event is not None:
                    event.set()

    async def dispatch() -> None:
        nonlocal dispatch_seconds
        cid = uuid.UUID(campaign_id)
        while True:
            async with sm() as session, session.begin():
                campaign = await session.get_one(Campaign, cid)
                result = await dispatch_campaign(
                    session, campaign, now=datetime.now(UTC), public_url="https://nimbus.example", mx=None, batch=BATCH
                )
            if result.queued:
                await redis.publish(channel, ",".join(str(i) for i in result.queued))
                continue
            async with sm() as session:
                waiting = await session.scalar(
                    select(func.count()).where(
                        Enrollment.campaign_id == cid,
                        Enrollment.status == "active",
                        Enrollment.next_send_at.is_not(None),
                    )
                )
            if not waiting:
                break
            await asyncio.sleep(0.05)
        dispatch_seconds = time.perf_counter() - start
        await redis.publish(channel, "done")

    listener = asyncio.create_task(listen())
    async with SmtpPool(net) as pool:
        deps = SenderDeps(
            sessionmaker=sm,
            vault=vault,
            pool=pool,
            pacer=None,
            public_url="https://nimbus.example",
            batch=BATCH,
            commit_every=COMMIT_EVERY,
        )

        async def sender(inbox: uuid.UUID) -> int:
            sent = 0
            while True:
                await wakes[inbox].wait()
                wakes[inbox].clear()
                last = finished.is_set()
                outcome = await run_inbox(deps, inbox, max_seconds=600)
                sent += outcome.outcomes["sent"]
                if last:
                    return sent

        tasks = [sender(uuid.UUID(i)) for i in inboxes]
        if dispatcher:
            tasks.append(dispatch())  # type: ignore[arg-type]
        counts = await asyncio.gather(*tasks)
    await listener
    await pubsub.aclose()
    await redis.aclose()
    await engine.dispose()
    report.put(("finished", sum(c for c in counts if c), dispatch_seconds, time.process_time() - cpu_start))


async def product(dsn: str, master_key: str, port: int, campaign_id, inboxes, processes: int) -> float:  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context("spawn")
    go, report = ctx.Event(), ctx.Queue()
    shares = [[str(i) for i in inboxes[n::processes]] for n in range(processes)]
    procs = [
        ctx.Process(target=worker_process, args=(dsn, master_key, port, share, str(campaign_id), n == 0, go, report))
        for n, share in enumerate(shares)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        kind, *_ = await asyncio.to_thread(report.get, True, 60)
        assert kind == "ready"
    before = await database_counters(dsn)
    machine = machine_cpu()
    start = time.perf_counter()
    go.set()
    results = [await asyncio.to_thread(report.get, True, 600) for _ in procs]
    elapsed = time.perf_counter() - start
    busy, available = machine_cpu_since(machine)
    worker_cpu = sum(r[3] for r in results)
    print(
        f"  CPU seconds: machine busy {busy:.2f} of {available:.2f}; worker processes {worker_cpu:.2f}; "
        f"the rest (PostgreSQL, smtp-sink, kernel) {busy - worker_cpu:.2f}",
        flush=True,
    )
    for proc in procs:
        proc.join(10)  # their connections closed: PostgreSQL has counted their work
    await asyncio.sleep(0.5)
    after = await database_counters(dsn)
    delta = {k: after[k] - before[k] for k in after}
    print(
        "  PostgreSQL: " + ", ".join(f"{k} {v / RECIPIENTS:.2f}" for k, v in delta.items()) + " per message",
        flush=True,
    )
    sent = sum(r[1] for r in results)
    dispatch_seconds = max(r[2] for r in results)
    print(
        f"  product ({processes} worker process{'es' if processes > 1 else ''}): sent {sent} in {elapsed:.2f} s, "
        f"dispatcher done after {dispatch_seconds:.2f} s",
        flush=True,
    )
    if sent != RECIPIENTS:
        conn = await asyncpg.connect(dsn)
        rows = await conn.fetch(
            "SELECT state, error_code, reply_code, reply_text, count(*) FROM messages GROUP BY 1,2,3,4"
        )
        await conn.close()
        raise SystemExit(f"not all sent: {[tuple(r) for r in rows]}")
    return elapsed


def prebuilt() -> list[bytes]:
    """The bytes the product sends (same headers, parts and size), built before any clock starts."""
    return [
        mime.to_bytes(
            mime.build(
                mime.OutgoingMail(
                    from_email=f"sender{i % INBOXES}@bench.example",
                    from_name=f"Sender {i % INBOXES}",
                    to_email=f"lead{i}@example.org",
                    to_name=f"Lead{i}",
                    reply_to=None,
                    subject=f"Quick question, Lead{i}",
                    text=f"Hi Lead{i},\n\nA short note for Company {i}.\nUnsubscribe: https://nimbus.example/u/{i:032x}\n",
                    html=None,
                    message_id=mime.new_message_id("bench.example"),
                    in_reply_to=None,
                    references=(),
                    unsubscribe_url=f"https://nimbus.example/u/{i:032x}",
                    unsubscribe_mailto=f"mailto:sender{i % INBOXES}@bench.example?subject=unsubscribe-{i:032x}",
                )
            )
        )
        for i in range(RECIPIENTS)
    ]


async def raw(port: int, messages: list[bytes]) -> float:
    async def connection(n: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for i in range(n, RECIPIENTS, INBOXES):
            await client.sendmail(f"sender{n}@bench.example", [f"lead{i}@example.org"], messages[i])
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(connection(n) for n in range(INBOXES)))
    return time.perf_counter() - start


async def client_only(port: int, messages: list[bytes]) -> float:
    """The product's SMTP client (``smtp.client.transmit``: pipelined, each envelope riding with the
    previous final dot, as the product's unpaced sender does) alone, pre-built messages."""
    net = sink_net(port)
    server = SmtpServer(host="127.0.0.1", port=port, mode="none", username=None, password=None)
    conns = [await smtp_connect(server, net) for _ in range(INBOXES)]

    async def connection(n: int) -> None:
        mine = [
            Outgoing(f"sender{n}@bench.example", [f"lead{i}@example.org"], messages[i])
            for i in range(n, RECIPIENTS, INBOXES)
        ]
        for m, then in zip(mine, [*mine[1:], None], strict=True):
            await transmit(conns[n], sender=m.sender, recipients=m.recipients, message=m.message, then=then)

    start = time.perf_counter()
    await asyncio.gather(*(connection(n) for n in range(INBOXES)))
    elapsed = time.perf_counter() - start
    for conn in conns:
        await close_gracefully(conn)
    return elapsed


async def main() -> None:
    if not Path(SINK).exists():  # noqa: ASYNC240
        raise SystemExit(f"{SINK} missing: run scripts/install-test-deps (Debian package postfix)")
    port = free_port()
    sink = subprocess.Popen(  # noqa: ASYNC220
        [SINK, "-u", "nobody", f"127.0.0.1:{port}", "1000"], stdout=subprocess.DEVNULL
    )
    name = f"nimbus_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(upgrade_head, dsn)
        master_key = generate_master_key()
        vault = Vault(MasterKeyring.from_strings([master_key]))
        messages = prebuilt()
        print("raw aiosmtplib, pre-built messages, 10 reused connections ...", flush=True)
        raw_times = [await raw(port, messages) for _ in range(2)]
        print(f"raw aiosmtplib:   {RECIPIENTS / statistics.median(raw_times):8.0f} msgs/s", flush=True)
        client_time = statistics.median([await client_only(port, messages) for _ in range(2)])
        client_rate = RECIPIENTS / client_time
        print(
            f"product's SMTP client alone (pipelined), same messages and connections: {client_rate:8.0f} msgs/s",
            flush=True,
        )
        processes = max(1, min(os.cpu_count() or 1, INBOXES))
        # The target configuration runs three times (each on its own freshly seeded campaign) and its
        # ratio is the median of the three runs' ratios: on shared cores a single run moves by +-15%.
        runs = ([1] if processes > 1 else []) + [processes] * TARGET_RUNS
        results: dict[int, list[tuple[float, float]]] = {}  # processes -> [(product rate, raw rate around it)]
        for n, count in enumerate(runs):
            label = f"bench{n}"
            print(f"seeding {INBOXES} inboxes and {RECIPIENTS} enrolled contacts ({label}) ...", flush=True)
            campaign_id, inboxes = await seed(dsn, vault, port, label)
            print(f"product: dispatcher + database + rendering + pooled sender, {count} process(es) ...", flush=True)
            rate = RECIPIENTS / await product(dsn, master_key, port, campaign_id, inboxes, count)
            # The baseline is measured right before and right after each product run (the median of the
            # raw runs around it), so a machine whose speed drifts during the run (shared cores) moves
            # both sides of the ratio alike.
            raw_times.append(await raw(port, messages))
            raw_rate = RECIPIENTS / statistics.median(raw_times[-3:])
            print(f"  raw aiosmtplib around this run: {raw_rate:8.0f} msgs/s; ratio {rate / raw_rate:.2f}", flush=True)
            results.setdefault(count, []).append((rate, raw_rate))

        for count, measured in results.items():
            print(
                f"product pipeline, {count} worker process{'es' if count > 1 else ''}: "
                + ", ".join(f"{rate:.0f} msgs/s (ratio {rate / raw_rate:.2f})" for rate, raw_rate in measured)
            )
        target = results[processes]
        ratio = statistics.median(rate / raw_rate for rate, raw_rate in target)
        print(
            f"ratio product/raw: {ratio:.2f}, the median of {len(target)} runs (target >= 0.60; product with one "
            f"worker process per core, {processes} here, as a deployment runs `nimbus worker`); "
            f"product/its SMTP client alone: {statistics.median(rate for rate, _ in target) / client_rate:.2f}"
        )
        if ratio >= 0.60:
            print("OK")
        elif os.environ.get("NIMBUS_BENCH_STRICT"):
            raise SystemExit("TARGET MISSED")
        else:
            # Reported, not enforced (NIMBUS_BENCH_STRICT=1 enforces it): the open work on this target is
            # PostgreSQL's share of the CPU, printed above.
            print("TARGET NOT MET YET")
    finally:
        sink.terminate()
        sink.wait(5)
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
