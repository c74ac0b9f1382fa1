"""The worker's process-wide resources and the task transaction (the task boundary owns it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.outage import Outages
from nimbus_api.sending.mx import MxChecker
from nimbus_api.smtp.pacing import Pacer
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.sync.runner import SyncRunner
from nimbus_api.webhooks.dispatcher import Dispatcher
from nimbus_api.webhooks.runtime import WebhookKit


@dataclass
class WorkerResources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    vault: Vault
    pool: SmtpPool
    pacer: Pacer | None
    mx: MxChecker
    worker_id: str
    outages: Outages = field(default_factory=Outages)
    webhooks: WebhookKit | None = None
    dispatcher: Dispatcher | None = None
    sync: SyncRunner | None = None


def resources(ctx: dict[str, Any]) -> WorkerResources:
    res: WorkerResources = ctx["nimbus"]
    return res


@asynccontextmanager
async def task_session(ctx: dict[str, Any]) -> AsyncIterator[AsyncSession]:
    """One transaction per task run: commit on success, roll back on error."""
    async with resources(ctx).sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
