"""The warmup exchange's worker jobs (cron, ``unique``); each is idempotent and takes no arguments.

* ``warmup_plan`` (every 10 minutes): today's missing rows (``planner.plan``), in the task's transaction.
* ``warmup_send`` (every 30 s): expire lost leases, send the due rows (``sender.send_due``).
* ``warmup_receive`` (every minute): act on what the sync recorded (``receiver.handle_pending``).
"""

from __future__ import annotations

from typing import Any

import structlog

from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import build_net_context
from nimbus_api.warmup import planner, receiver, sender
from nimbus_api.warmup.marker import Marker
from nimbus_api.worker.context import resources, task_session

log = structlog.get_logger(__name__)
_DEPS_KEY = "nimbus_warmup"


def deps(ctx: dict[str, Any]) -> sender.WarmupDeps:
    found: sender.WarmupDeps | None = ctx.get(_DEPS_KEY)
    if found is None:
        res = resources(ctx)
        found = sender.WarmupDeps(
            sessionmaker=res.sessionmaker,
            vault=res.vault,
            net=build_net_context(res.settings),
            marker=Marker.from_keyring(res.vault.keyring),
            settings=res.settings,
            owner=f"{res.worker_id}-warmup",
        )
        ctx[_DEPS_KEY] = found
    return found


async def warmup_plan(ctx: dict[str, Any]) -> int:
    async with task_session(ctx) as session:
        planned = await planner.plan(session, planner.PlanConfig.of(resources(ctx).settings), utcnow())
    if planned:
        log.info("warmup_planned", count=planned)
    return planned


async def warmup_send(ctx: dict[str, Any]) -> dict[str, int]:
    outcomes = await sender.send_due(deps(ctx))
    if outcomes:
        log.info("warmup_sent", **outcomes)
    return dict(outcomes)


async def warmup_receive(ctx: dict[str, Any]) -> int:
    return await receiver.handle_pending(deps(ctx))
