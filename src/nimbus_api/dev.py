"""``nimbus dev`` (what ``make run`` calls): one process for a laptop.

It resolves the stores (configured URLs, local services, or embedded PostgreSQL and Redis under
``./.nimbus``; see ``embedded``), makes sure a master key exists, applies migrations, creates a
``default`` workspace on the first start (printing its API key once), then serves the HTTP API and
runs an arq worker side by side until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
import uvicorn
from pydantic import SecretStr

from nimbus_api.api.app import create_app
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.embedded import ensure_dev_master_key, resolve_dev_stores
from nimbus_api.kit.crypto import MasterKeyring
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.kit.special_use import configure_process
from nimbus_api.worker.settings import create_worker
from nimbus_api.workspaces.service import ensure_default_workspace

log = structlog.get_logger("nimbus.dev")


async def _bootstrap(settings: Settings) -> str | None:
    assert settings.database_url
    engine = make_engine(settings.database_url)
    try:
        vault = Vault(MasterKeyring.from_strings([k.get_secret_value() for k in settings.master_keys]))
        async with make_sessionmaker(engine)() as session, session.begin():
            return await ensure_default_workspace(session, vault)
    finally:
        await engine.dispose()


async def run_dev(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    stores = resolve_dev_stores(settings)
    try:
        master_key = ensure_dev_master_key(settings)
        settings = settings.model_copy(
            update={
                "database_url": stores.database_url,
                "redis_url": stores.redis_url,
                "master_keys": settings.master_keys or [SecretStr(master_key)],
            }
        )
        assert settings.database_url
        await asyncio.to_thread(upgrade_head, settings.database_url)
        token = await _bootstrap(settings)
        if token:
            print(
                "\nCreated workspace 'default'. Its API key (shown once, store it now):\n\n"
                f"    {token}\n\n"
                f"Try: curl -H 'Authorization: Bearer {token}' http://{host or settings.host}:"
                f"{port or settings.port}/v1/email-accounts\n",
                flush=True,
            )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host=host or settings.host, port=port or settings.port, log_config=None
            )
        )
        configure_process(settings, "worker")
        worker = create_worker(settings, handle_signals=False)
        worker_task = asyncio.create_task(worker.async_run())
        log.info("dev_ready", mode=stores.mode, url=f"http://{host or settings.host}:{port or settings.port}")
        try:
            await server.serve()
        finally:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
            await worker.close()
    finally:
        stores.close()
