"""Benchmark: the inbox pick among 1,000 inboxes of one pool.

The product's pick (``sending.rotation.pick_inbox``: one statement through SQLAlchemy + asyncpg) against
the same SQL sent by raw asyncpg (prepared once, custom plans, as the product's engine is configured).
Both pick and reserve for real (each pick bumps an inbox's usage and ``last_sent_at``, so the LRU order
keeps moving) and run as the dispatcher does: many picks in one transaction (batches of ``BATCH``),
each pick timed on its own. The two sides take turns, a batch each, on the same pool. Targets: median
under 2 ms, at most 1.5x raw asyncpg.

Uses the PostgreSQL at ``NIMBUS_BENCH_PG_ADMIN`` (default postgresql://postgres@127.0.0.1:5432/postgres)
and a throwaway database it drops at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nimbus_api.kit.db import SERVER_SETTINGS, make_engine, make_sessionmaker, utc_day
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.sending.rotation import PICK_ONE_SQL, PickRequest, pick_inbox

ADMIN = os.environ.get("NIMBUS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
INBOXES = 1000
PICKS = 1000
WARMUP = 50
BATCH = 50


async def seed(dsn: str) -> tuple[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        ws = await conn.fetchval(
            "INSERT INTO workspaces (id, name, created_at) VALUES (gen_random_uuid(), 'bench', now()) RETURNING id"
        )
        domain = await conn.fetchval(
            "INSERT INTO domains (id, workspace_id, name, is_paused, created_at, updated_at)"
            " VALUES (gen_random_uuid(), $1, 'bench.example', false, now(), now()) RETURNING id",
            ws,
        )
        campaign = await conn.fetchval(
            "INSERT INTO campaigns (id, workspace_id, name, type, status, min_health_score, bounce_rate_threshold,"
            " verify_email_mx, timezone, send_days, send_start, send_end, created_at, updated_at)"
            " VALUES (gen_random_uuid(), $1, 'bench', 'cold', 'active', 70, 8, false, 'UTC', '{0,1,2,3,4,5,6}',"
            " '00:00', '23:59', now(), now()) RETURNING id",
            ws,
        )
        await conn.execute(
            """
            WITH a AS (
              INSERT INTO email_accounts (id, workspace_id, domain_id, email, provider, smtp_host, smtp_port, smtp_mode,
                daily_send_limit, sync_interval_seconds, campaign_types, is_active, overall_score, reputation_score,
                warmup_progress, current_stage, bounce_rate_7d, complaint_rate_7d, created_at, updated_at,
                last_sent_at)
              SELECT gen_random_uuid(), $1, $2, 'inbox' || g || '@bench.example', 'custom', 'smtp.bench.example', 587,
                'starttls', 100000, 120, '{cold,nurture}', g % 10 <> 0, 60 + (g % 40), 50, 0,
                CASE WHEN g % 7 = 0 THEN 2 ELSE 3 END, 0, 0, now(), now(), now() - (g || ' seconds')::interval
              FROM generate_series(1, $4::int) g
              RETURNING id
            )
            INSERT INTO campaign_accounts (campaign_id, account_id, created_at) SELECT $3, id, now() FROM a
            """,
            ws,
            domain,
            campaign,
            INBOXES,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return str(ws), str(campaign)


def as_asyncpg(sql: str) -> tuple[str, list[str]]:
    names: list[str] = []

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return re.sub(r"(?<!:):([a-z_]+)", repl, sql), names


async def main() -> None:
    name = f"nimbus_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        print(f"migrating {name} ...", flush=True)
        await asyncio.to_thread(upgrade_head, dsn)
        print(f"seeding {INBOXES} inboxes in one pool ...", flush=True)
        workspace, campaign = await seed(dsn)
        now = datetime.now(UTC)
        request = PickRequest(
            workspace_id=uuid.UUID(workspace),
            campaign_id=uuid.UUID(campaign),
            campaign_type="cold",
            min_health_score=70.0,
            first_step=True,
            now=now,
        )

        engine = make_engine(dsn, pool_size=1, max_overflow=0)
        sessionmaker = make_sessionmaker(engine)
        sql, names = as_asyncpg(str(PICK_ONE_SQL))
        conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)  # the product's session settings
        stmt = await conn.prepare(sql)
        product: list[float] = []
        raw: list[float] = []
        tick = 0  # one clock for both sides: each pick is a millisecond after the one before

        def next_now() -> datetime:
            nonlocal tick
            tick += 1
            return now + timedelta(milliseconds=tick)

        async def product_batch(times: list[float]) -> None:
            async with sessionmaker() as session, session.begin():
                for _ in range(BATCH):
                    req = PickRequest(**{**request.__dict__, "now": next_now()})
                    start = time.perf_counter()
                    picked = await pick_inbox(session, req)
                    times.append(time.perf_counter() - start)
                    assert picked is not None

        async def raw_batch(times: list[float]) -> None:
            async with conn.transaction():
                for _ in range(BATCH):
                    values = {
                        "workspace_id": request.workspace_id,
                        "campaign_id": request.campaign_id,
                        "only_account": None,
                        "min_health": request.min_health_score,
                        "min_stage": 3,
                        "now": next_now(),
                        "campaign_type": "cold",
                        "first_step": True,
                        "day": utc_day(now),
                        "n": 1,
                    }
                    start = time.perf_counter()
                    row = await stmt.fetchrow(*[values[n] for n in names])
                    times.append(time.perf_counter() - start)
                    assert row is not None

        # Batches alternate between the two sides, on the same pool as it rotates: a machine whose speed
        # drifts during the run (shared cores) moves both sides alike.
        warmup: list[float] = []
        for round_ in range((WARMUP + PICKS) // BATCH):
            warming = round_ * BATCH < WARMUP
            await product_batch(warmup if warming else product)
            await raw_batch(warmup if warming else raw)
            if not warming and len(product) % 250 == 0:
                print(f"  {len(product)} picks each", flush=True)
        await conn.close()
        await engine.dispose()

        p_med, r_med = statistics.median(product), statistics.median(raw)
        p95 = statistics.quantiles(product, n=20)[18]
        print(f"inbox pick among {INBOXES} inboxes, {PICKS} picks each (one statement each, {BATCH} per transaction)")
        print(f"product (SQLAlchemy session): median {p_med * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms")
        print(f"raw asyncpg, same SQL:        median {r_med * 1000:.3f} ms")
        print(f"ratio product/raw:            {p_med / r_med:.2f}x (target <= 1.5x); median target < 2 ms")
        if p_med / r_med > 1.5:
            # A speed ratio on shared cores: reported, enforced with NIMBUS_BENCH_STRICT=1.
            print("TARGET MISSED: the product's pick is more than 1.5x raw asyncpg on this machine")
            if os.environ.get("NIMBUS_BENCH_STRICT"):
                raise SystemExit(1)
            return
        if p_med >= 0.002:
            # The ratio compares the product with the same SQL on the same machine; the 2 ms median is a
            # time on the clock, which a slower or busier machine misses with unchanged code (its raw
            # figure above shows by how much). Reported, enforced with NIMBUS_BENCH_STRICT=1.
            print("MEDIAN TARGET MISSED on this machine (the raw asyncpg median above is the same SQL)")
            if os.environ.get("NIMBUS_BENCH_STRICT"):
                raise SystemExit(1)
            return
        print("OK")
    finally:
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
