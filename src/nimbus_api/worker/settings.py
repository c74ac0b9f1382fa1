"""arq worker configuration, built from ``Settings`` (arq wants a class; we build its arguments)."""

from __future__ import annotations

from typing import Any

import structlog
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import MasterKeyring
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.worker.context import WorkerResources
from nimbus_api.worker.tasks import purge_idempotency_keys

log = structlog.get_logger(__name__)
QUEUE_NAME = "nimbus:queue"
FUNCTIONS: list[Any] = [purge_idempotency_keys]


def worker_kwargs(settings: Settings) -> dict[str, Any]:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("NIMBUS_DATABASE_URL and NIMBUS_REDIS_URL must be set")
    keyring = MasterKeyring.from_strings([k.get_secret_value() for k in settings.master_keys])
    database_url = settings.database_url

    async def on_startup(ctx: dict[str, Any]) -> None:
        engine = make_engine(database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
        ctx["nimbus"] = WorkerResources(
            settings=settings, engine=engine, sessionmaker=make_sessionmaker(engine), vault=Vault(keyring)
        )
        log.info("worker_started", queue=QUEUE_NAME)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        resources: WorkerResources | None = ctx.get("nimbus")
        if resources is not None:
            await resources.engine.dispose()

    return {
        "functions": FUNCTIONS,
        "cron_jobs": [cron(purge_idempotency_keys, minute={7, 37}, run_at_startup=True, unique=True)],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": QUEUE_NAME,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "keep_result": 3600,
        "max_jobs": 20,
        "job_timeout": 300,
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**{**worker_kwargs(settings), **overrides})
