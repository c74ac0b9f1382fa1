"""The retention purge of accepted notifications: ``provider_hook_events`` rows older than
``NIMBUS_PROVIDER_HOOKS_RETENTION_DAYS`` are deleted, in batches of short transactions.

What the rows guard stays guarded after they go: a signed timestamp older than the freshness window is
refused anyway (SNS, SendGrid, Mailgun), and a report applied again changes nothing (a bounced message is
not counted again, a complaint is counted once per message and recipient, a suppression exists once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from nimbus_api.kit.db import purge_before, utcnow
from nimbus_api.models import ProviderHookEvent
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)
PURGE_BATCH = 5000


async def purge_provider_hook_events(ctx: dict[str, Any]) -> int:
    res = resources(ctx)
    days = res.settings.provider_hooks_retention_days
    purged = await purge_before(res.sessionmaker, ProviderHookEvent, utcnow() - timedelta(days=days), batch=PURGE_BATCH)
    log.info("provider_hook_events_purged", count=purged, retention_days=days)
    return purged
