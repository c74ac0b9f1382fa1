"""arq job of the provider quotas: ``refresh_provider_quotas`` (cron, every minute) reads the quota of
every account that is due (credentials just set, or the last read older than the refresh interval).
Idempotent: what is due is what PostgreSQL says; a claimed account is not read twice by two workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nimbus_api.provider_quotas.service import RefreshConfig, refresh_due
from nimbus_api.worker.context import resources


async def refresh_provider_quotas(ctx: dict[str, Any]) -> dict[str, int]:
    res = resources(ctx)
    settings = res.settings
    config = RefreshConfig(
        net=res.pool.net,
        endpoint_url=settings.ses_endpoint_url,
        timeout=settings.ses_timeout_seconds,
        interval=timedelta(seconds=settings.ses_quota_refresh_seconds),
        ca_file=str(settings.extra_ca_file) if settings.extra_ca_file else None,
    )
    return await refresh_due(res.sessionmaker, res.vault, config)
