"""The migrations build exactly the schema the models describe, and every one of them undoes cleanly.

alembic's own comparison (what ``alembic check`` runs) must find nothing to add, drop or alter: a model
change without its migration, or a migration that drifted from its model, fails here rather than in a
deployment.
"""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from nimbus_api import models  # noqa: F401  (registers every table on the metadata)
from nimbus_api.kit.db import Base, make_engine
from nimbus_api.kit.migrate import alembic_config
from tests.conftest import PG_ADMIN_DSN, _db_url


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _schema_differences(engine: AsyncEngine) -> list[object]:
    async with engine.connect() as connection:
        return await connection.run_sync(_differences)


async def test_the_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    # The run's database, built by ``alembic upgrade head`` (conftest.database_url).
    assert await _schema_differences(engine) == []


async def test_every_migration_downgrades_and_upgrades_again() -> None:
    """``downgrade base`` then ``upgrade head``, on a database of its own, ends at the models' schema."""
    name = f"nimbus_test_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    url = _db_url(name)
    cfg = alembic_config(url)
    try:
        await asyncio.to_thread(command.upgrade, cfg, "head")
        await asyncio.to_thread(command.downgrade, cfg, "base")
        conn = await asyncpg.connect(url)
        try:
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        finally:
            await conn.close()
        assert left == 0  # every table the upgrades made, the downgrades removed
        await asyncio.to_thread(command.upgrade, cfg, "head")
        engine = make_engine(url)
        try:
            assert await _schema_differences(engine) == []
            async with engine.connect() as connection:
                version = await connection.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        finally:
            await engine.dispose()
        assert version == ScriptDirectory.from_config(cfg).get_current_head()
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
