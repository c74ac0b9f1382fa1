"""Liveness, readiness and CORS."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.kit.db import make_engine, make_sessionmaker


async def test_healthz_and_readyz_need_no_auth(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    r = await http.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}


async def test_readyz_is_503_when_a_store_is_unreachable(settings: Settings, app_state: AppState) -> None:
    # Nothing listens on port 1 of loopback: both stores are unreachable.
    engine = make_engine("postgresql://postgres@127.0.0.1:1/none", connect_args={"timeout": 1})
    state = AppState(
        settings=settings,
        engine=engine,
        sessionmaker=make_sessionmaker(engine),
        redis=Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1),
        vault=app_state.vault,
        verifier=app_state.verifier,
        webhooks=app_state.webhooks,
    )
    app = create_app(settings, state=state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/readyz")
    await engine.dispose()
    await state.redis.aclose()
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "postgres": "unavailable", "redis": "unavailable"}


async def test_cors_allows_configured_origins_only(settings: Settings, app_state: AppState) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["https://app.example"]}), state=app_state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        ok = await client.options(
            "/v1/email-accounts",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
            },
        )
        bad = await client.options(
            "/v1/email-accounts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in bad.headers


async def test_unknown_route_is_problem_json(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"
