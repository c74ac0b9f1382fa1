"""Fixtures of the metrics tests: the sending fixtures (real inboxes, campaigns, a pool), an app whose
``/metrics`` needs a token, and a parser of the text format."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from tests.sending.conftest import campaigns, deps, pool  # noqa: F401  (fixtures)

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
