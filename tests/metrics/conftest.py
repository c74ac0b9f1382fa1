"""Fixtures of the metrics tests: the sending fixtures (real inboxes, campaigns, a pool), the webhook rig
(its ``quiet_outbox`` sets other tests' endpoints aside here too), a worker context, an app whose
``/metrics`` needs a token, and a parser of the text format."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.net import build_net_context
from nimbus_api.sending.mx import MxChecker
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.worker.context import WorkerResources
from tests.sending.conftest import campaigns, deps, pool  # noqa: F401  (fixtures)
from tests.webhooks.conftest import hooks_zone, quiet_outbox, receiver, rig  # noqa: F401  (fixtures)

TOKEN = "metrics-token-for-tests"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def ctx(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> AsyncIterator[dict[str, Any]]:
    """What a worker's jobs get (``WorkerResources``), with a pool that sweeps every 50 ms."""
    assert settings.redis_url
    redis: ArqRedis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    net = build_net_context(settings)
    async with SmtpPool(net, idle_timeout=0.2) as smtp_pool:
        yield {
            "redis": redis,
            "nimbus": WorkerResources(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker,
                vault=vault,
                pool=smtp_pool,
                pacer=None,
                mx=MxChecker(net.resolver),
                worker_id="metrics-test-worker",
            ),
        }
    await redis.aclose()


@pytest.fixture(scope="session")
def metrics_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})


@pytest.fixture(scope="session")
async def metrics_http(metrics_settings: Settings, app_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    state = dataclasses.replace(app_state, settings=metrics_settings)
    app = create_app(metrics_settings, state=state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nimbus.test") as client:
        yield client


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)
