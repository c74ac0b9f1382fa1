"""The import's worker jobs: the runner (``run_account_import``, argument: the import id only) and the
resume cron (every 5 s and at every worker's startup), which enqueues a runner for each running import no
live runner holds: one just uploaded whose job was lost, or one whose runner died (its lease expired)."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy import or_, select

from nimbus_api.account_imports.runner import ImportRunner, RunnerConfig, import_verifier
from nimbus_api.kit.db import utcnow
from nimbus_api.models import AccountImport
from nimbus_api.sending.tasks import QUEUE_NAME
from nimbus_api.validation.service import build_verifier
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)
RUN_JOB = "run_account_import"
RUN_JOB_TIMEOUT = 6 * 3600


async def enqueue_run(redis: Redis, import_id: uuid.UUID) -> None:
    """Ask a worker to run the import (after the commit that wrote it). A lost job is the cron's to redo."""
    arq = redis if isinstance(redis, ArqRedis) else ArqRedis(connection_pool=redis.connection_pool)
    await arq.enqueue_job(RUN_JOB, str(import_id), _queue_name=QUEUE_NAME)


async def run_account_import(ctx: dict[str, Any], import_id: str) -> bool:
    res = resources(ctx)
    settings = res.settings
    verifier = import_verifier(build_verifier(settings, ctx["redis"]), settings)
    runner = ImportRunner(
        uuid.UUID(import_id),
        sessionmaker=res.sessionmaker,
        vault=res.vault,
        verifier=verifier,
        redis=ctx["redis"],
        config=RunnerConfig.from_settings(settings),
    )
    ran = await runner.run()
    log.info("account_import_run", import_id=import_id, ran=ran)
    return ran


async def resume_account_imports(ctx: dict[str, Any]) -> int:
    res = resources(ctx)
    async with res.sessionmaker() as session:
        ids = list(
            await session.scalars(
                select(AccountImport.id).where(
                    AccountImport.status == "running",
                    or_(AccountImport.runner_lease_until.is_(None), AccountImport.runner_lease_until < utcnow()),
                )
            )
        )
    for import_id in ids:
        await enqueue_run(ctx["redis"], import_id)
    if ids:
        log.info("account_imports_resumed", count=len(ids))
    return len(ids)
