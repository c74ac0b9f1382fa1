"""The outage tests' own PostgreSQL and Redis (``tests/servers/private_stores.py``), which they restart.

Every store-facing fixture of the root conftest is redefined here, so that the tests of this package, and
the fixtures they use from elsewhere (``make_tenant``, and ``campaigns`` from the sending tests), see the
private servers and nothing of theirs touches the shared ones. They are package-scoped: the servers are stopped when
the package's tests are done.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.migrate import upgrade_head
from tests.conftest import build_app_state, build_settings
from tests.sending.conftest import campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.private_stores import PrivatePostgres, PrivateRedis

__all__ = ["campaigns"]  # the fixture, for the tests of this package


@pytest.fixture(scope="package")
def private_postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture(scope="package")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path_factory.mktemp("private-redis")) as server:
        yield server


@pytest.fixture(scope="package")
async def database_url(private_postgres: PrivatePostgres) -> str:
    name = f"nimbus_outage_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(private_postgres.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    url = private_postgres.url(name)
    upgrade_head(url)
    return url


@pytest.fixture(scope="package")
def redis_url(private_redis: PrivateRedis) -> str:
    return private_redis.url


@pytest.fixture(scope="package")
def settings(database_url: str, redis_url: str, master_key: str, mail_world: MailWorld) -> Settings:
    return build_settings(database_url, redis_url, master_key, mail_world)


@pytest.fixture(scope="package")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=5, max_overflow=10)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="package")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture(scope="package")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="package")
def app_state(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis, vault: Vault
) -> AppState:
    return build_app_state(settings, engine, sessionmaker, redis, vault)


@pytest.fixture(scope="package")
def app(settings: Settings, app_state: AppState):  # type: ignore[no-untyped-def]
    return create_app(settings, state=app_state)


@pytest.fixture(scope="package")
async def http(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nimbus.test") as client:
        yield client
