"""Worker jobs of the health engine. Idempotent: each recomputes from what PostgreSQL holds now.

* ``recompute_all`` (cron, every ``NIMBUS_HEALTH_RECOMPUTE_SECONDS``): every inbox, ``NIMBUS_HEALTH_BATCH`` at a
  time in id order, each batch one statement and its own transaction (with the batch's daily snapshots),
  ``NIMBUS_HEALTH_CONCURRENCY`` batches at once.
* ``recompute_requested`` (cron, every ``NIMBUS_HEALTH_REQUEST_SECONDS``): the inboxes marked by
  ``health.requests`` (a bounce, a complaint, a login failure, a listing), oldest request first.
* ``recompute_account(account_id)``: one inbox, for callers that hold a queue (and people, via arq).

The runners take a sessionmaker so tests and the benchmark drive the same code the worker runs. Given the
warmup thresholds (the worker always gives them), each batch also brings its inboxes' stages in line with
the new scores in the same transaction (``stages.apply_stages``): a score that fell under a stage's floor
demotes the inbox in the same commit, not at the next stage tick.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.health.recompute import Change, recompute
from nimbus_api.health.snapshots import snapshot
from nimbus_api.kit.metrics import HEALTH_RECOMPUTE_SECONDS, timed
from nimbus_api.models import EmailAccount
from nimbus_api.stages.service import apply_stages
from nimbus_api.stages.stages import RateThresholds
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)
Sm = async_sessionmaker[AsyncSession]


@dataclass
class Run:
    inboxes: int = 0
    batches: int = 0
    snapshots: int = 0
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0


async def _recompute(
    session: AsyncSession, ids: list[uuid.UUID], now: datetime, stages: RateThresholds | None
) -> list[Change]:
    with timed(HEALTH_RECOMPUTE_SECONDS):
        changes = await recompute(session, ids, now)
    if stages is not None:
        await apply_stages(session, ids, settings=stages, now=now)
    return changes


async def run_all(
    sm: Sm,
    batch: int,
    now: datetime | None = None,
    *,
    snapshots: bool = True,
    concurrency: int = 1,
    stages: RateThresholds | None = None,
) -> Run:
    """Every inbox, a batch at a time (consecutive ids), each batch committed with its events and snapshots.
    Up to ``concurrency`` batches run at once, each on a connection of its own: the batches are disjoint,
    so they never wait for each other's row locks."""
    started = time.monotonic()
    run = Run()
    async with sm() as session:
        ids = list(await session.scalars(select(EmailAccount.id).order_by(EmailAccount.id)))
    batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(part: list[uuid.UUID]) -> None:
        async with gate:
            async with sm() as session, session.begin():
                run.changes.extend(await _recompute(session, part, now or datetime.now(UTC), stages))
            if snapshots:
                run.snapshots += await _snapshot(sm, part)
        run.inboxes += len(part)
        run.batches += 1

    await asyncio.gather(*(one(part) for part in batches))
    run.seconds = time.monotonic() - started
    return run


async def run_requested(
    sm: Sm, batch: int, now: datetime | None = None, *, max_batches: int = 10, stages: RateThresholds | None = None
) -> Run:
    """The inboxes waiting for a recompute (``health.requests``), oldest request first."""
    started = time.monotonic()
    run = Run()
    for _ in range(max_batches):
        async with sm() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(EmailAccount.id)
                    .where(EmailAccount.health_requested_at.is_not(None))
                    .order_by(EmailAccount.health_requested_at)
                    .limit(batch)
                )
            )
            if not ids:
                break
            run.changes += await _recompute(session, ids, now or datetime.now(UTC), stages)
        run.snapshots += await _snapshot(sm, ids)
        run.inboxes += len(ids)
        run.batches += 1
        if len(ids) < batch:
            break
    run.seconds = time.monotonic() - started
    return run


async def recompute_all(ctx: dict[str, Any]) -> int:
    res = resources(ctx)
    run = await run_all(
        res.sessionmaker, res.settings.health_batch, concurrency=res.settings.health_concurrency, stages=res.settings
    )
    log.info(
        "health_recomputed",
        inboxes=run.inboxes,
        batches=run.batches,
        band_changes=len(run.changes),
        seconds=round(run.seconds, 3),
    )
    return run.inboxes


async def recompute_requested(ctx: dict[str, Any]) -> int:
    res = resources(ctx)
    run = await run_requested(res.sessionmaker, res.settings.health_batch, stages=res.settings)
    if run.inboxes:
        log.info("health_requests_recomputed", inboxes=run.inboxes, band_changes=len(run.changes))
    return run.inboxes


async def recompute_account(ctx: dict[str, Any], account_id: str) -> int:
    """One inbox now (an id only: nothing else in the job's arguments)."""
    res = resources(ctx)
    sm = res.sessionmaker
    ids = [uuid.UUID(account_id)]
    async with sm() as session, session.begin():
        changes = await _recompute(session, ids, datetime.now(UTC), res.settings)
    await _snapshot(sm, ids)
    return len(changes)


async def _snapshot(sm: Sm, ids: list[uuid.UUID]) -> int:
    """The batch's daily snapshots, in a transaction of their own: the recompute's row locks on the inboxes
    (which the rotation's ``SKIP LOCKED`` pick steps around) are held no longer than its statement needs.
    A snapshot lost to a crash in between is written by the next run."""
    async with sm() as session, session.begin():
        return await snapshot(session, ids)


def cron_times(seconds: int) -> tuple[set[int] | None, set[int]]:
    """arq ``cron`` ``(minute, second)`` for "every ``seconds``": seconds of every minute under a minute, else
    minutes of the hour (a step that does not divide the minute or the hour leaves a shorter gap at the turn)."""
    if seconds < 60:
        return None, set(range(0, 60, max(1, seconds)))
    return set(range(0, 60, max(1, seconds // 60))), {0}
