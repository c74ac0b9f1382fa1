from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.account_imports.runner import ImportRunner, RunnerConfig, import_verifier
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from tests.account_imports.fleet import Fleet
from tests.servers.mail_world import MailWorld


@pytest.fixture(scope="module")
async def fleet(mail_world: MailWorld) -> AsyncIterator[Fleet]:
    started = await Fleet.start(mail_world)
    yield started
    await started.stop()


async def run_import(
    import_id: uuid.UUID,
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    redis: Redis,
    app_state: AppState,
    per_host: int = 4,
    per_workspace: int = 16,
) -> bool:
    """The runner in this process (the workers run the same object; tests/account_imports/test_resume.py
    runs it in real worker processes)."""
    config = RunnerConfig(
        per_host=per_host,
        per_workspace=per_workspace,
        lease_seconds=10,
        max_accounts=settings.max_accounts_per_workspace,
    )
    runner = ImportRunner(
        import_id,
        sessionmaker=sessionmaker,
        vault=vault,
        verifier=import_verifier(app_state.verifier, settings),
        redis=redis,
        config=config,
    )
    return await runner.run()
