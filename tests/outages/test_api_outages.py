"""The API while a store is away: 503 ``service_unavailable`` with ``Retry-After`` (a problem document,
nothing changed), and the same requests succeed as soon as the store is back, on the same app and pools."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from tests.conftest import Tenant, account_payload
from tests.servers.private_stores import PrivatePostgres, PrivateRedis


async def test_postgres_away_answers_503_and_the_api_recovers_by_itself(
    tenant: Tenant, private_postgres: PrivatePostgres
) -> None:
    assert (await tenant.client.get("/v1/email-accounts")).status_code == 200
    await asyncio.to_thread(private_postgres.stop, "fast")
    try:
        with structlog.testing.capture_logs() as logs:
            for path in ("/v1/email-accounts", "/v1/campaigns", "/v1/workspace"):
                r = await tenant.client.get(path)
                assert r.status_code == 503, (path, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.headers["retry-after"] == "2"
                assert r.json()["code"] == "service_unavailable"
                assert r.json()["detail"] == "a data store is not reachable; nothing was changed, try again shortly"
            r = await tenant.client.post("/v1/contacts", json={"email": "ada@example.org"})
            assert r.status_code == 503, r.text
    finally:
        await asyncio.to_thread(private_postgres.start)
    assert all(e["log_level"] == "warning" for e in logs if e["event"] == "request_met_store_outage")
    assert not [e for e in logs if e["event"] == "unhandled_error"]
    for path in ("/v1/email-accounts", "/v1/campaigns", "/v1/workspace"):
        assert (await tenant.client.get(path)).status_code == 200, path
    # The refused write changed nothing; written now, it is there once.
    r = await tenant.client.post("/v1/contacts", json={"email": "ada@example.org"})
    assert r.status_code == 201, r.text
    listed = (await tenant.client.get("/v1/contacts")).json()
    assert [c["email"] for c in listed["data"]] == ["ada@example.org"]


async def test_redis_away_answers_503_where_redis_is_needed(tenant: Tenant, private_redis: PrivateRedis) -> None:
    private_redis.stop()
    try:
        # Connecting an account is rate-limited in Redis before anything is verified or stored.
        r = await tenant.client.post("/v1/email-accounts", json=account_payload(imap=None))
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "service_unavailable"
        # Reading does not need Redis.
        assert (await tenant.client.get("/v1/email-accounts")).status_code == 200
    finally:
        private_redis.start()
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(imap=None))
    assert r.status_code == 201, r.text


@pytest.fixture(autouse=True)
def _stores_up(private_postgres: PrivatePostgres, private_redis: PrivateRedis) -> None:
    """Each test starts with both stores up (an earlier test's failure may have left one down)."""
    if private_redis.proc is None:
        private_redis.start()
