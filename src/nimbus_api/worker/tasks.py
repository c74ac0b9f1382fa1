"""Housekeeping tasks. Each is idempotent: running it twice does no harm."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete

from nimbus_api.kit.db import utcnow
from nimbus_api.models import IdempotencyRecord
from nimbus_api.worker.context import resources, task_session

log = structlog.get_logger(__name__)


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Forget idempotency records older than ``NIMBUS_IDEMPOTENCY_TTL_HOURS``."""
    cutoff = utcnow() - timedelta(hours=resources(ctx).settings.idempotency_ttl_hours)
    async with task_session(ctx) as session:
        result = await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
    purged: int = getattr(result, "rowcount", 0) or 0
    log.info("idempotency_keys_purged", count=purged)
    return purged
