"""The retention purge: events older than ``NIMBUS_EVENT_RETENTION_DAYS`` are deleted.

Idempotent (a second run finds nothing older than the cutoff). It deletes in batches, each its own short
transaction, so a backlog never holds one long lock on the table nor one huge WAL record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from nimbus_api.kit.db import purge_before, utcnow
from nimbus_api.models import Event
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)
PURGE_BATCH = 5000


async def purge_events(ctx: dict[str, Any]) -> int:
    res = resources(ctx)
    cutoff = utcnow() - timedelta(days=res.settings.event_retention_days)
    purged = await purge_before(res.sessionmaker, Event, cutoff, batch=PURGE_BATCH)
    log.info("events_purged", count=purged, retention_days=res.settings.event_retention_days)
    return purged
