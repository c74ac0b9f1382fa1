"""arq jobs of domain health. ``check_domains`` (cron, nightly at ``NIMBUS_DOMAIN_CHECK_HOUR`` UTC): every
sending domain re-checked (``domains.rechecks.check_all``); idempotent, a second run only checks again."""

from __future__ import annotations

from typing import Any

import structlog

from nimbus_api.domains.health import HealthChecker
from nimbus_api.domains.rechecks import check_all
from nimbus_api.kit.net import build_net_context
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)

CHECK_JOB_TIMEOUT = 60 * 60
_CHECKER_KEY = "domain_health_checker"


def _checker(ctx: dict[str, Any]) -> HealthChecker:
    # One per worker process, kept in arq's context: its blocklist answer cache serves every run.
    checker: HealthChecker | None = ctx.get(_CHECKER_KEY)
    if checker is None:
        settings = resources(ctx).settings
        checker = HealthChecker.from_settings(settings, build_net_context(settings))
        ctx[_CHECKER_KEY] = checker
    return checker


async def check_domains(ctx: dict[str, Any]) -> int:
    """Re-check every domain that has an inbox; returns how many were checked."""
    res = resources(ctx)
    run = await check_all(res.sessionmaker, _checker(ctx), vault=res.vault)
    log.info("domain_checks_run", checked=run.checked, unhealthy=run.unhealthy, healthy=run.healthy, failed=run.failed)
    return run.checked


__all__ = ["CHECK_JOB_TIMEOUT", "check_domains"]
