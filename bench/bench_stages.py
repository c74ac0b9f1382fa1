"""Benchmark: the stage run over 10,000 inboxes, set-based against a per-inbox Python loop.

The product (``stages.service.apply_stages``: one UPDATE computing every inbox's stage and progress
from the stage table) against the same rule applied the way a naive job would: read each inbox, compute
``get_inbox_stage`` in Python, write it back with one UPDATE per inbox. Both start from the same seeded
values (reset in between); the invariant (fatal) is that both leave every inbox with the same stage and
progress. Target: the set-based run under 1 s and at least 10x the loop (printed, not fatal).

Uses the PostgreSQL at ``NIMBUS_BENCH_PG_ADMIN`` (default postgresql://postgres@127.0.0.1:5432/postgres)
and a throwaway database it drops at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

import asyncpg
from sqlalchemy import select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.models import EmailAccount
from nimbus_api.stages.service import apply_stages
from nimbus_api.stages.stages import Thresholds, get_inbox_stage, warmup_progress

ADMIN = os.environ.get("NIMBUS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
INBOXES = int(os.environ.get("NIMBUS_BENCH_STAGES_INBOXES", "10000"))
RULES = Thresholds()


async def seed(dsn: str) -> None:
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
        await conn.execute(
            """
            INSERT INTO email_accounts (id, workspace_id, domain_id, email, provider, smtp_host, smtp_port, smtp_mode,
              daily_send_limit, sync_interval_seconds, campaign_types, is_active, overall_score, reputation_score,
              warmup_progress, current_stage, bounce_rate_7d, complaint_rate_7d, warmup_sent_total, created_at,
              updated_at)
            SELECT gen_random_uuid(), $1, $2, 'inbox' || g || '@bench.example', 'custom', 'smtp.bench.example', 587,
              'starttls', 100, 120, '{cold,nurture}', true, 30 + (g * 7919 % 700) / 10.0, 50, 0, g % 6,
              (g::bigint * 104729 % 50) / 10.0, (g::bigint * 15485863 % 5) / 10.0, g * 31 % 900, now(), now()
            FROM generate_series(1, $3::int) g
            """,
            ws,
            domain,
            INBOXES,
        )
        await conn.execute("CREATE TABLE bench_start AS SELECT id, current_stage, warmup_progress FROM email_accounts")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE email_accounts a SET current_stage = s.current_stage, warmup_progress = s.warmup_progress"
            " FROM bench_start s WHERE s.id = a.id"
        )
    finally:
        await conn.close()


async def snapshot(dsn: str) -> dict[str, tuple[int, float]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, current_stage, warmup_progress FROM email_accounts")
    finally:
        await conn.close()
    return {str(r["id"]): (r["current_stage"], r["warmup_progress"]) for r in rows}


async def main() -> None:
    name = f"nimbus_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        print(f"migrating {name} ...", flush=True)
        await asyncio.to_thread(upgrade_head, dsn)
        print(f"seeding {INBOXES} inboxes ...", flush=True)
        await seed(dsn)
        engine = make_engine(dsn, pool_size=2, max_overflow=0)
        sessionmaker = make_sessionmaker(engine)

        start = time.perf_counter()
        async with sessionmaker() as session, session.begin():
            changes = await apply_stages(session, None, settings=RULES)
        set_based = time.perf_counter() - start
        product = await snapshot(dsn)

        await reset(dsn)
        start = time.perf_counter()
        async with sessionmaker() as session, session.begin():
            for account in list(await session.scalars(select(EmailAccount))):
                stage = (
                    account.stage_override if account.stage_override is not None else get_inbox_stage(account, RULES)
                )
                progress = warmup_progress(stage, account.warmup_sent_total)
                if (stage, progress) != (account.current_stage, account.warmup_progress):
                    await session.execute(
                        update(EmailAccount)
                        .where(EmailAccount.id == account.id)
                        .values(current_stage=stage, warmup_progress=progress)
                        .execution_options(synchronize_session=False)
                    )
        loop = time.perf_counter() - start
        looped = await snapshot(dsn)
        await engine.dispose()

        if product != looped:
            differ = sum(1 for k in product if product[k] != looped[k])
            raise SystemExit(f"INVARIANT BROKEN: {differ} inboxes differ between the set-based run and the loop")
        print(f"stage run over {INBOXES} inboxes ({len(changes)} stage changes, events included)")
        print(f"set-based (one UPDATE):        {set_based * 1000:.1f} ms")
        print(f"per-inbox Python loop:         {loop * 1000:.1f} ms")
        print(f"ratio loop/set-based:          {loop / set_based:.1f}x (target >= 10x); set-based target < 1 s")
        if set_based >= 1.0 or loop / set_based < 10:
            print("TARGET MISSED on this machine (results identical: the invariant holds)")
            return
        print("OK")
    finally:
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
