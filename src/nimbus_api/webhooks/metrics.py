"""An endpoint's delivery health for its read model: the last 24 h of attempts, and its last error."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.kit.db import utcnow
from nimbus_api.webhooks.delivery_schemas import EndpointMetrics, LastError

_METRICS = text(
    """
    SELECT endpoint_id,
           count(*) AS attempts,
           count(*) FILTER (WHERE error_class IS NULL) AS succeeded,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
    FROM webhook_attempts
    WHERE endpoint_id = ANY(:ids) AND attempted_at > :since
    GROUP BY endpoint_id
    """
)
_LAST_ERRORS = text(
    """
    SELECT DISTINCT ON (endpoint_id) endpoint_id, attempted_at, error_class, status_code, error
    FROM webhook_attempts
    WHERE endpoint_id = ANY(:ids) AND error_class IS NOT NULL
    ORDER BY endpoint_id, attempted_at DESC
    """
)


async def metrics(session: AsyncSession, endpoint_ids: list[uuid.UUID]) -> dict[uuid.UUID, EndpointMetrics]:
    """Success rate and latency over the last 24 h, and the last error, per endpoint."""
    found = {
        e: EndpointMetrics(
            attempts_24h=0, success_rate_24h=None, latency_p50_ms=None, latency_p95_ms=None, last_error=None
        )
        for e in endpoint_ids
    }
    if not endpoint_ids:
        return found
    since = utcnow() - timedelta(hours=24)
    for row in await session.execute(_METRICS, {"ids": endpoint_ids, "since": since}):
        m = found[row.endpoint_id]
        m.attempts_24h = int(row.attempts)
        m.success_rate_24h = round(row.succeeded / row.attempts, 4) if row.attempts else None
        m.latency_p50_ms, m.latency_p95_ms = row.p50, row.p95
    for row in await session.execute(_LAST_ERRORS, {"ids": endpoint_ids}):
        found[row.endpoint_id].last_error = LastError(
            at=row.attempted_at, error_class=row.error_class, status_code=row.status_code, error=row.error
        )
    return found
