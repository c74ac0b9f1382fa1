"""Benchmark: ``GET /v1/email-accounts/{id}/monitoring`` for one inbox with 100,000 messages.

The inbox's 100,000 messages are spread over the last 10 days (so about 70,000 fall in the 7-day window
and 10,000 in the last 24 h), with 10,000 failed attempts (``send_attempts``) spread the same way, beside
four other inboxes of the workspace with 50,000 messages of their own; the inbox has a sync row and a
few active alerts. Requests go through the real ASGI app (httpx's ASGI transport: routing, the API key,
the transaction, serialization), one after another: 20 to warm up, then ``REQUESTS`` timed. Target: p95
under 50 ms. Also printed: the plan of the send-figures statement (EXPLAIN ANALYZE): the window's
partial ends from the two per-inbox indexes of the alerts migration, its full hours from the rollup
(``monitoring.figures``; the first request rolls the week up, the others find it done).

Then the alert evaluation over every workspace (``alerts.evaluate``, what the worker's cron runs each
minute): ``FLEET`` more inboxes in one more workspace, with their sync rows, a tenth of them under the
default score rule and a twentieth over the bounce rule; timed when the alerts start (every trigger and
its event written), again when nothing changes (the steady state of most minutes), and when they all end.

Invariants checked (fatal): each evaluation's triggers and resolves are the counts the rows call for. And
the figures the endpoint returns equal the counts made directly in SQL. A
missed speed target is printed, not fatal (shared machines are noisy).

Uses the PostgreSQL at ``NIMBUS_BENCH_PG_ADMIN`` (default postgresql://postgres@127.0.0.1:5432/postgres)
and a throwaway database it drops at the end; Redis at ``NIMBUS_BENCH_REDIS`` (default
redis://127.0.0.1:6379/9), which the app's verifier needs to exist (this bench verifies nothing).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nimbus_api.alerts.evaluate import evaluate
from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import MasterKeyring, generate_master_key
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.logging import configure_logging
from nimbus_api.models import Domain, EmailAccount, MailboxSync
from nimbus_api.monitoring.figures import _FIGURES, Bounds
from nimbus_api.validation.service import build_verifier
from nimbus_api.webhooks.runtime import build_kit
from nimbus_api.workspaces import service as workspaces

ADMIN = os.environ.get("NIMBUS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("NIMBUS_BENCH_REDIS", "redis://127.0.0.1:6379/9")
MESSAGES = int(os.environ.get("NIMBUS_BENCH_MONITORING_MESSAGES", "100000"))
OTHER_MESSAGES = MESSAGES // 2
ATTEMPTS = MESSAGES // 10
STEPS = 10  # messages per enrollment (one per step): MESSAGES / STEPS enrollments
REQUESTS = 200
WARMUP = 20
TARGET_P95 = 0.050
FLEET = int(os.environ.get("NIMBUS_BENCH_ALERT_INBOXES", "10000"))


async def bench_evaluation(dsn: str, vault: Vault) -> None:
    engine = make_engine(dsn)
    sm = make_sessionmaker(engine)
    async with sm() as session, session.begin():
        ws = await workspaces.create_workspace(session, vault, f"bench-fleet-{secrets.token_hex(3)}")
    conn = await asyncpg.connect(dsn)
    try:
        domain = await conn.fetchval(
            "INSERT INTO domains (id, workspace_id, name, is_paused, dns_status, blocklist_status, created_at,"
            " updated_at) VALUES (gen_random_uuid(), $1, 'fleet.example', false, 'pass', 'clean', now(), now())"
            " RETURNING id",
            ws.id,
        )
        await conn.execute(
            """
            WITH a AS (
              INSERT INTO email_accounts (id, workspace_id, domain_id, email, provider, smtp_host, smtp_port, smtp_mode,
                daily_send_limit, sync_interval_seconds, campaign_types, is_active, overall_score, reputation_score,
                warmup_progress, current_stage, bounce_rate_7d, complaint_rate_7d, created_at, updated_at)
              SELECT gen_random_uuid(), $1, $2, 'fleet' || g || '@fleet.example', 'custom', 'smtp.fleet.example', 587,
                'starttls', 100, 120, '{cold}', true, CASE WHEN g % 10 = 0 THEN 30 ELSE 70 END, 50, 0, 3,
                CASE WHEN g % 20 = 1 THEN 9 ELSE 1 END, 0, now(), now()
              FROM generate_series(1, $3::int) g
              RETURNING id
            )
            INSERT INTO mailbox_syncs (account_id, workspace_id, status, next_poll_at, last_success_at,
                                       consecutive_failures, messages_stored, created_at, updated_at)
            SELECT id, $1, 'ok', now(), now(), 0, 0, now(), now() FROM a
            """,
            ws.id,
            domain,
            FLEET,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    expected_up = FLEET // 10 + (FLEET + 19) // 20

    async def timed(label: str, want: tuple[int, int]) -> None:
        async with sm() as session, session.begin():
            start = time.perf_counter()
            outcome = await evaluate(session)
            elapsed = time.perf_counter() - start
        if outcome.counts != want:
            raise SystemExit(f"INVARIANT BROKEN: {label}: {outcome.counts} (triggered, resolved), expected {want}")
        print(f"  {label}: {elapsed * 1000:.0f} ms ({want[0]} triggered, {want[1]} resolved)")

    print(f"alert evaluation of every workspace, {FLEET} more inboxes, six kinds (one statement each):")
    await timed("alerts start", (expected_up, 0))
    await timed("nothing changes", (0, 0))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE email_accounts SET overall_score = 90, bounce_rate_7d = 0 WHERE workspace_id = $1", ws.id
        )
    finally:
        await conn.close()
    await timed("alerts end", (0, expected_up))
    await engine.dispose()


async def seed(dsn: str, vault: Vault) -> tuple[uuid.UUID, uuid.UUID, str]:
    """The workspace, its API key's token and the measured inbox (ORM, as the product writes them), then
    the bulk rows in SQL."""
    engine = make_engine(dsn)
    sm = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with sm() as session, session.begin():
        ws = await workspaces.create_workspace(session, vault, f"bench-{secrets.token_hex(3)}")
        _, token = await workspaces.create_api_key(session, ws.id, "bench")
        domain = Domain(workspace_id=ws.id, name="bench.example", dns_status="pass", blocklist_status="listed")
        session.add(domain)
        await session.flush()
        accounts = [
            EmailAccount(
                workspace_id=ws.id,
                domain_id=domain.id,
                email=f"inbox{i}@bench.example",
                smtp_host="smtp.bench.example",
                smtp_port=587,
                smtp_mode="starttls",
                imap_host="imap.bench.example",
                imap_port=993,
                imap_mode="ssl",
                imap_username=f"inbox{i}@bench.example",
                campaign_types=["cold"],
                overall_score=35.0 if i == 0 else 80.0,
            )
            for i in range(5)
        ]
        session.add_all(accounts)
        await session.flush()
        session.add_all(
            MailboxSync(account_id=a.id, workspace_id=ws.id, status="ok", last_success_at=now - timedelta(seconds=90))
            for a in accounts
        )
        await session.flush()
        await evaluate(session, workspace_id=ws.id)  # a score alert on the inbox, a listing on its domain
    await engine.dispose()
    target, others = accounts[0].id, [a.id for a in accounts[1:]]

    conn = await asyncpg.connect(dsn)
    try:
        campaign = await conn.fetchval(
            "INSERT INTO campaigns (id, workspace_id, name, type, status, min_health_score, bounce_rate_threshold,"
            " verify_email_mx, timezone, send_days, send_start, send_end, created_at, updated_at)"
            " VALUES (gen_random_uuid(), $1, 'bench', 'cold', 'active', 70, 8, false, 'UTC', '{0,1,2,3,4,5,6}',"
            " '00:00', '23:59', now(), now()) RETURNING id",
            ws.id,
        )
        total = MESSAGES + OTHER_MESSAGES
        await conn.execute(
            """
            INSERT INTO contacts (id, workspace_id, email, fields, created_at, updated_at)
            SELECT gen_random_uuid(), $1, 'c' || g || '@example.org', '{}', now(), now()
            FROM generate_series(1, $2::int) g
            """,
            ws.id,
            total // STEPS,
        )
        await conn.execute(
            """
            INSERT INTO enrollments (id, workspace_id, campaign_id, contact_id, status, next_step, unsubscribe_token,
                                     created_at, updated_at)
            SELECT gen_random_uuid(), $1, $2, c.id, 'active', 0, md5(random()::text || c.id::text), now(), now()
            FROM contacts c WHERE c.workspace_id = $1
            """,
            ws.id,
            campaign,
        )
        print(f"  {total // STEPS} enrollments", flush=True)
        # Enrollment n's steps 0..9; the first MESSAGES messages are the measured inbox's, the rest spread
        # over the other four. sent_at spread evenly over the last 10 days.
        await conn.execute(
            """
            WITH e AS (SELECT id, contact_id, row_number() OVER (ORDER BY id) - 1 AS n FROM enrollments
                       WHERE workspace_id = $1)
            INSERT INTO messages (id, enrollment_id, workspace_id, campaign_id, contact_id, account_id, step, state,
                                  to_email, subject, message_id_header, attempts, sent_at, reply_code, created_at,
                                  updated_at)
            SELECT gen_random_uuid(), e.id, $1, $2, e.contact_id,
                   CASE WHEN e.n * $5 + s < $3 THEN $4 ELSE ($6::uuid[])[1 + (e.n * $5 + s) % 4] END,
                   s, 'sent', 'c@example.org', 'hello', '<' || gen_random_uuid() || '@bench.example>', 1,
                   now() - ((e.n * $5 + s) % $3) * make_interval(secs => $7), 250,
                   now() - interval '11 days', now()
            FROM e CROSS JOIN generate_series(0, $5 - 1) s
            """,
            ws.id,
            campaign,
            MESSAGES,
            target,
            STEPS,
            others,
            864000.0 / MESSAGES,  # ten days, evenly
        )
        print(f"  {total} messages", flush=True)
        await conn.execute(
            """
            INSERT INTO send_attempts (id, message_id, account_id, outcome, error_code, started_at, finished_at)
            SELECT gen_random_uuid(), m.id, m.account_id,
                   (ARRAY['transient', 'failed', 'credential', 'unknown'])[1 + g % 4],
                   (ARRAY['smtp.connection_refused', 'smtp.recipient_rejected', 'smtp.auth_failed',
                          'smtp.timeout'])[1 + g % 4],
                   m.sent_at - interval '1 minute', m.sent_at - interval '1 minute'
            FROM (SELECT id, account_id, sent_at, row_number() OVER () AS g FROM messages
                  WHERE account_id = $1 LIMIT $2) m
            """,
            target,
            ATTEMPTS,
        )
        print(f"  {ATTEMPTS} failed attempts", flush=True)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return ws.id, target, token


async def explain(dsn: str, account_id: uuid.UUID) -> None:
    """The read's figures statement, after the rollup (which the requests did)."""
    conn = await asyncpg.connect(dsn)
    try:
        bounds = Bounds.at(datetime.now(UTC))
        names = ["account_id", "since_24h", "since_7d", "cutoff", "day_head_end", "week_head_end"]
        sql = str(_FIGURES)
        for i, name in enumerate(names, 1):
            sql = sql.replace(f":{name}", f"${i}")
        args = [account_id] + [getattr(bounds, n) for n in names[1:]]
        rows = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql, *args)
        print("send figures, EXPLAIN ANALYZE:")
        for row in rows:
            print("   ", row[0])
    finally:
        await conn.close()


async def expected(dsn: str, account_id: uuid.UUID, generated_at: datetime) -> tuple[int, int, int, int]:
    """Accepted and attempts, 24 h and 7 d, counted directly (the invariant)."""
    conn = await asyncpg.connect(dsn)
    try:
        day, week = generated_at - timedelta(hours=24), generated_at - timedelta(days=7)
        sent_day = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE account_id=$1 AND sent_at>=$2", account_id, day
        )
        sent_week = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE account_id=$1 AND sent_at>=$2", account_id, week
        )
        att_day = await conn.fetchval(
            "SELECT count(*) FROM send_attempts WHERE account_id=$1 AND started_at>=$2", account_id, day
        )
        att_week = await conn.fetchval(
            "SELECT count(*) FROM send_attempts WHERE account_id=$1 AND started_at>=$2", account_id, week
        )
        return sent_day, sent_day + att_day, sent_week, sent_week + att_week
    finally:
        await conn.close()


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def main() -> None:
    configure_logging("warning", "console")
    name = f"nimbus_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    key = generate_master_key()
    vault = Vault(MasterKeyring.from_strings([key]))
    try:
        print(f"migrating {name} ...", flush=True)
        await asyncio.to_thread(upgrade_head, dsn)
        print(f"seeding one inbox with {MESSAGES} messages ...", flush=True)
        _, account_id, token = await seed(dsn, vault)

        settings = Settings(database_url=dsn, redis_url=REDIS, master_keys=[SecretStr(key)], log_level="warning")
        engine = make_engine(dsn, pool_size=5, max_overflow=0)
        redis = Redis.from_url(REDIS)
        verifier = build_verifier(settings, redis)
        state = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=make_sessionmaker(engine),
            redis=redis,
            vault=vault,
            verifier=verifier,
            webhooks=build_kit(settings, verifier.net, vault, Actor.system("bench")),
        )
        app = create_app(settings, state=state)
        path = f"/v1/email-accounts/{account_id}/monitoring"
        times: list[float] = []
        floor: list[float] = []  # GET /v1/email-accounts/{id}: the app's own cost for one small read
        body = None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://nimbus.bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            for i in range(WARMUP + REQUESTS):
                for url, into in ((path, times), (f"/v1/email-accounts/{account_id}", floor)):
                    start = time.perf_counter()
                    r = await client.get(url)
                    elapsed = time.perf_counter() - start
                    if r.status_code != 200:
                        raise SystemExit(f"{url} answered {r.status_code}: {r.text[:300]}")
                    if i >= WARMUP:
                        into.append(elapsed)
                    if into is times:
                        body = r.json()
        await state.webhooks.close()
        await redis.aclose()
        await engine.dispose()

        await explain(dsn, account_id)
        assert body is not None
        day, week = body["sends"]
        want = await expected(dsn, account_id, datetime.fromisoformat(body["generated_at"]))
        got = (day["accepted"], day["attempts"], week["accepted"], week["attempts"])
        if got != want:
            raise SystemExit(f"INVARIANT BROKEN: the endpoint says {got}, the tables say {want}")
        print(
            f"figures: 24 h {day['attempts']} attempts ({day['accepted']} accepted), "
            f"7 d {week['attempts']} attempts ({week['accepted']} accepted); "
            f"{len(body['active_alerts'])} active alerts; equal to direct counts"
        )
        p50, p95, p99 = pct(times, 50), pct(times, 95), pct(times, 99)
        print(
            f"GET monitoring, one inbox with {MESSAGES} messages, {REQUESTS} requests through the ASGI app: "
            f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (target p95 < 50 ms)"
        )
        print(
            f"for scale, GET /v1/email-accounts/{{id}} in the same run: p50 {pct(floor, 50) * 1000:.1f} ms, "
            f"p95 {pct(floor, 95) * 1000:.1f} ms"
        )
        await bench_evaluation(dsn, vault)
        print("OK" if p95 < TARGET_P95 else "TARGET MISSED: p95 at or over 50 ms on this machine")
    finally:
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
