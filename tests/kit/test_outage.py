"""``kit.outage``: which errors are a store's outage (met for real, against closed ports and a live
server), the backoff's shape, and one log line per outage."""

from __future__ import annotations

import statistics

import asyncpg
import pytest
import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from nimbus_api.kit.db import make_engine
from nimbus_api.kit.outage import MAX_DELAY, Outage, Outages, backoff, outage_of, ride_out
from tests.servers.private_stores import free_port


async def test_a_refused_redis_connection_is_a_redis_outage() -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    with pytest.raises(Exception) as caught:
        await client.ping()
    await client.aclose()
    assert outage_of(caught.value) == "redis"


async def test_a_refused_postgres_connection_is_an_outage_only_for_a_caller_that_knows_the_store() -> None:
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nimbus")
    with pytest.raises(Exception) as caught:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    await engine.dispose()
    # A refused connect is a bare OSError: it says the network failed, not which store.
    assert outage_of(caught.value) is None
    assert outage_of(caught.value, default="postgres") == "postgres"


async def test_a_terminated_backend_is_a_postgres_outage(database_url: str) -> None:
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        killer = await asyncpg.connect(database_url)
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
        await killer.close()
        with pytest.raises(Exception) as caught:
            await conn.execute(text("SELECT 1"))
    await engine.dispose()
    assert outage_of(caught.value) == "postgres"


async def test_a_constraint_violation_is_not_an_outage(database_url: str) -> None:
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TEMP TABLE t (id int PRIMARY KEY)"))
        with pytest.raises(IntegrityError) as caught:
            await conn.execute(text("INSERT INTO t VALUES (1), (1)"))
    await engine.dispose()
    assert outage_of(caught.value, default="postgres") is None


def test_backoff_doubles_from_half_a_second_to_a_cap_with_jitter() -> None:
    medians = [statistics.median(backoff(n) for _ in range(400)) for n in range(1, 10)]
    assert medians[0] == pytest.approx(0.5, rel=0.1)
    assert medians[1] == pytest.approx(1.0, rel=0.1)
    assert medians[2] == pytest.approx(2.0, rel=0.1)
    assert medians[-1] == pytest.approx(MAX_DELAY, rel=0.1)
    samples = [backoff(100) for _ in range(400)]
    assert max(samples) <= MAX_DELAY * 1.25
    assert min(samples) >= MAX_DELAY * 0.75
    assert len(set(samples)) > 300  # jittered: workers do not retry in step


def test_an_outage_is_logged_when_it_begins_and_when_it_ends_not_per_failure() -> None:
    outage = Outages().redis
    with structlog.testing.capture_logs() as logs:
        for _ in range(50):
            outage.failed(ConnectionError("refused"))
        outage.recovered()
        outage.recovered()
        outage.failed(ConnectionError("refused"))
    events = [(e["event"], e.get("failed_operations")) for e in logs]
    assert events == [("store_unavailable", None), ("store_recovered", 50), ("store_unavailable", None)]
    assert outage.outages == 2 and outage.ongoing


async def test_ride_out_waits_for_the_store_and_raises_anything_else_at_once() -> None:
    outage = Outage("postgres")
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError(111, "refused")
        return "done"

    assert await ride_out(flaky, outage) == "done"
    assert calls == 3 and not outage.ongoing

    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await ride_out(broken, outage)
    assert not outage.ongoing

    async def down() -> None:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        await ride_out(down, outage, deadline=0.0)  # a deadline already passed: the first failure is raised
