"""Alembic environment: async engine, URL from NIMBUS_DATABASE_URL or the caller's config."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from nimbus_api import models  # noqa: F401  (registers every table on the metadata)
from nimbus_api.config import get_settings
from nimbus_api.kit.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise RuntimeError("set NIMBUS_DATABASE_URL to run migrations")
    return url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
