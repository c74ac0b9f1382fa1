"""Benchmark: a 5,000-recipient campaign over 10 inboxes, through the real dispatcher, database, rendering
and sender, against raw aiosmtplib sending pre-built messages over 10 reused connections.

The sink is Postfix's ``smtp-sink`` (C; far ahead of any Python client), on loopback, cleartext and
without AUTH (it has no TLS, and answers AUTH with a non-standard 250), so both sides pay only their own
costs. Pacing is off. Target: product rate at least 0.60 of
the raw rate.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path

import aiosmtplib
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import MasterKeyring, generate_master_key
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.egress import EgressPolicy, make_resolver
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.kit.net import NetContext, make_tls_context
from nimbus_api.models import Campaign, CampaignAccount, CampaignStep, Domain, EmailAccount
from nimbus_api.sending.dispatcher import dispatch_campaign
from nimbus_api.sending.sender import SenderDeps, run_inbox
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.workspaces import service as workspaces

ADMIN = os.environ.get("NIMBUS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
RECIPIENTS = 5000
INBOXES = 10
SINK = "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(dsn: str, vault: Vault, port: int) -> list:  # type: ignore[type-arg]
    engine = make_engine(dsn)
    sm = make_sessionmaker(engine)
    async with sm() as session, session.begin():
        ws = await workspaces.create_workspace(session, vault, "bench")
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
                email=f"sender{i}@bench.example",
                from_name=f"Sender {i}",
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_mode="none",
                smtp_username=None,
                campaign_types=["cold"],
                current_stage=3,
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


async def product(dsn: str, vault: Vault, net: NetContext, campaign_id, inboxes) -> float:  # type: ignore[no-untyped-def]
    engine = make_engine(dsn, pool_size=INBOXES + 2, max_overflow=5)
    sm = make_sessionmaker(engine)
    start = time.perf_counter()
    queued = 0
    while queued < RECIPIENTS:
        async with sm() as session, session.begin():
            campaign = await session.get_one(Campaign, campaign_id)
            result = await dispatch_campaign(
                session, campaign, now=datetime.now(UTC), public_url="https://nimbus.example", mx=None, batch=1000
            )
        queued += sum(result.queued.values())
        print(f"  dispatched {queued}", flush=True)
    dispatched = time.perf_counter()
    async with SmtpPool(net) as pool:
        deps = SenderDeps(
            sessionmaker=sm, vault=vault, pool=pool, pacer=None, public_url="https://nimbus.example", batch=250
        )
        reports = await asyncio.gather(*(run_inbox(deps, inbox, max_seconds=600) for inbox in inboxes))
    elapsed = time.perf_counter() - start
    sent = sum(r.outcomes["sent"] for r in reports)
    print(f"  product: dispatch {dispatched - start:.2f} s, sent {sent} in {elapsed:.2f} s total", flush=True)
    if sent != RECIPIENTS:
        conn = await asyncpg.connect(dsn)
        rows = await conn.fetch(
            "SELECT state, error_code, reply_code, reply_text, count(*) FROM messages GROUP BY 1,2,3,4"
        )
        await conn.close()
        raise SystemExit(f"not all sent: {[tuple(r) for r in rows]}")
    await engine.dispose()
    return elapsed


async def raw(port: int) -> float:
    messages = [
        (
            f"Subject: Quick question, Lead{i}\r\nFrom: sender{i % INBOXES}@bench.example\r\n"
            f"To: lead{i}@example.org\r\n"
            f"Message-ID: <{secrets.token_hex(16)}@bench.example>\r\n\r\nHi Lead{i},\r\n"
        ).encode()
        for i in range(RECIPIENTS)
    ]

    async def connection(n: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for i in range(n, RECIPIENTS, INBOXES):
            await client.sendmail(f"sender{n}@bench.example", [f"lead{i}@example.org"], messages[i])
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(connection(n) for n in range(INBOXES)))
    return time.perf_counter() - start


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
        vault = Vault(MasterKeyring.from_strings([generate_master_key()]))
        print(f"seeding {INBOXES} inboxes and {RECIPIENTS} enrolled contacts ...", flush=True)
        campaign_id, inboxes = await seed(dsn, vault, port)
        net = NetContext(
            policy=EgressPolicy.from_entries(["127.0.0.0/8", f":{port}"]),
            resolver=make_resolver([], 2.0),
            tls=make_tls_context(),
            connect_timeout=5,
            command_timeout=30,
        )
        print("raw aiosmtplib, pre-built messages, 10 reused connections ...", flush=True)
        raw_times = [await raw(port) for _ in range(2)]
        raw_time = statistics.median(raw_times)
        print("product: dispatcher + database + rendering + pooled sender ...", flush=True)
        product_time = await product(dsn, vault, net, campaign_id, inboxes)
        raw_rate, product_rate = RECIPIENTS / raw_time, RECIPIENTS / product_time
        print(f"raw aiosmtplib:   {raw_rate:8.0f} msgs/s ({raw_time:.2f} s for {RECIPIENTS})")
        print(f"product pipeline: {product_rate:8.0f} msgs/s ({product_time:.2f} s for {RECIPIENTS})")
        ratio = product_rate / raw_rate
        print(f"ratio product/raw: {ratio:.2f} (target >= 0.60)")
        # Reported, not enforced yet: the sender commits twice per message and the dispatcher picks one
        # inbox per statement; batching both is the open work on this target.
        print("OK" if ratio >= 0.60 else "TARGET NOT MET YET")
    finally:
        sink.terminate()
        sink.wait(5)
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
