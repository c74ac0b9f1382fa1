"""arq jobs of the sending engine. Each is idempotent: Postgres holds every fact, a job only acts on
what the database says is due, and running one twice does no harm.

* ``dispatch_tick`` (cron, every 5 s): every active campaign's due enrollments -> queued messages, a
  batch (``NIMBUS_SEND_BATCH``) at a time, round-robin over the campaigns while batches come back full;
  each batch commits, then wakes the sender of every inbox that got messages (enqueue after commit).
* ``send_inbox(account_id)``: one inbox's sender. When it finds nothing due it asks ``sending.wakeups``
  whether a wake came meanwhile, and looks again if one did; when its time slice runs out it enqueues
  its successor. An inbox has at most one sender job queued or running, and no wake is lost (see
  ``sending.wakeups`` for why arq's job-id de-duplication alone lost some).
* ``sweep_tick`` (cron): expired leases marked ``unknown`` (never resent), and a wake-up for every inbox
  with due messages: a wiped Redis costs one sweep interval.

Job arguments are ids only: never secrets.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.campaigns import service as campaigns
from nimbus_api.campaigns.pool import load_pools
from nimbus_api.kit import metrics
from nimbus_api.models import Campaign
from nimbus_api.sending.dispatcher import DispatchResult, dispatch_campaign, utc_midnight_after
from nimbus_api.sending.sender import SenderDeps, run_inbox
from nimbus_api.sending.sweeper import sweep
from nimbus_api.sending.wakeups import Wakeups
from nimbus_api.worker.context import resources, task_session

log = structlog.get_logger(__name__)
QUEUE_NAME = "nimbus:queue"
SEND_SLICE_SECONDS = 60.0
DISPATCH_TICK_SECONDS = 4.0
"""How long one dispatch tick may go on feeding campaigns: under the cron interval (5 s)."""


SEND_JOB_TIMEOUT = SEND_SLICE_SECONDS + 120
"""arq's timeout for ``send_inbox``; also how long an inbox counts as having a sender after its worker died."""


def wakeups(ctx: dict[str, Any]) -> Wakeups:
    """The worker's ``Wakeups`` (one per worker context: its scripts are registered once)."""
    found = ctx.get("nimbus_wakeups")
    if not isinstance(found, Wakeups):
        found = ctx["nimbus_wakeups"] = Wakeups(ctx["redis"], queue_name=QUEUE_NAME, active_ttl=SEND_JOB_TIMEOUT)
    return found


async def exhausted_pool(session: AsyncSession, campaign: Campaign, now: datetime) -> bool:
    """Every inbox of the pool has used its day: stop queueing the campaign until the next UTC day."""
    inboxes = (await load_pools(session, [campaign.id], now)).get(campaign.id, [])
    return bool(inboxes) and all(inbox.reason(campaign, now) == "budget_exhausted" for inbox in inboxes)


async def dispatch_tick(ctx: dict[str, Any]) -> int:
    """Every active campaign, a batch at a time, round-robin, each batch its own transaction followed by
    the wake-up of the inboxes it fed: a campaign whose batch was full gets another, until none is full
    or ``DISPATCH_TICK_SECONDS`` have passed (the rest waits for the next tick). So a campaign is fed as
    fast as its inboxes send, not one batch per tick, and no campaign waits behind a big one."""
    res = resources(ctx)
    deadline = time.monotonic() + DISPATCH_TICK_SECONDS
    async with res.sessionmaker() as session:
        pending = list(await session.scalars(select(Campaign.id).where(Campaign.status == "active")))
    queued = 0
    while pending and time.monotonic() < deadline:
        full: list[uuid.UUID] = []
        for campaign_id in pending:
            result = await _dispatch_batch(ctx, campaign_id)
            if result is None:
                continue
            await wakeups(ctx).wake(result.queued)  # after the batch's commit
            queued += sum(result.queued.values())
            if result.due >= res.settings.send_batch:
                full.append(campaign_id)
        pending = full
    return queued


async def _dispatch_batch(ctx: dict[str, Any], campaign_id: uuid.UUID) -> DispatchResult | None:
    """One batch of one campaign, committed (None: the campaign is gone or another dispatcher has it)."""
    res = resources(ctx)
    now = datetime.now(UTC)
    async with task_session(ctx) as session:
        campaign = await session.get(Campaign, campaign_id, with_for_update={"skip_locked": True})
        if campaign is None:
            return None
        started = time.perf_counter()
        result = await dispatch_campaign(
            session, campaign, now=now, public_url=res.settings.public_url, mx=res.mx, batch=res.settings.send_batch
        )
        if result.due:
            metrics.DISPATCH_SECONDS.observe(time.perf_counter() - started)
        if result.deferred and not result.queued and await exhausted_pool(session, campaign, now):
            campaign.exhausted_until = utc_midnight_after(now)
            log.warning(
                "campaign_budget_exhausted",
                campaign_id=str(campaign.id),
                until=campaign.exhausted_until.isoformat(),
            )
    return result


async def send_inbox(ctx: dict[str, Any], account_id: str) -> dict[str, int]:
    res = resources(ctx)
    deps = SenderDeps(
        sessionmaker=res.sessionmaker,
        vault=res.vault,
        pool=res.pool,
        pacer=res.pacer,
        public_url=res.settings.public_url,
        worker_id=res.worker_id,
        lease_seconds=res.settings.send_lease_seconds,
        batch=res.settings.send_batch,
        commit_every=res.settings.send_commit_every,
        outages=res.outages,
        bounce_min_sample=res.settings.bounce_min_sample,
        settings=res.settings,
    )
    wake = wakeups(ctx)
    deadline = time.monotonic() + SEND_SLICE_SECONDS
    outcomes: Counter[str] = Counter()
    while True:
        report = await run_inbox(deps, uuid.UUID(account_id), max_seconds=max(0.0, deadline - time.monotonic()))
        outcomes.update(report.outcomes)
        if report.stopped_reason is not None:
            # Not sending (disabled, or its login failed): a later wake or the sweeper starts it again.
            await wake.release(account_id)
            break
        if time.monotonic() >= deadline:
            # The slice ran out, maybe with work left: the successor takes over this inbox's active mark.
            await wake.force(account_id)
            break
        if await wake.finish(account_id):
            break  # nothing due and no wake meanwhile: the inbox is idle
        # A wake came while this sender ran: what it announced was committed after our last look.
    return dict(outcomes)


async def sweep_tick(ctx: dict[str, Any]) -> dict[str, int]:
    async with task_session(ctx) as session:
        report = await sweep(session, datetime.now(UTC))
    async with task_session(ctx) as session:
        completed = await campaigns.complete_finished(session, datetime.now(UTC))
    if completed:
        log.info("campaigns_completed", count=completed)
    recovered = set(report.recovered_inboxes)
    await wakeups(ctx).wake(set(report.inboxes_with_work) - recovered, revive=True)
    # An inbox whose leases expired lost its sender, whose active mark may outlive it by the job timeout
    # (minutes): these get a sender at once.
    for account_id in recovered:
        await wakeups(ctx).force(account_id)
    if report.unknown:
        log.warning("sweeper_recovered", unknown=report.unknown)
    if report.handed_back:
        log.info("sweeper_handed_back", sends=report.handed_back)
    return {"unknown": report.unknown, "handed_back": report.handed_back, "inboxes": len(report.inboxes_with_work)}
