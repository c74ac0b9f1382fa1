"""The engine's pool: idle connections are checked before use, busy ones are not; new connections know
the bulk statements' array types."""

from __future__ import annotations

import warnings
from typing import Any

import asyncpg
import pytest
from sqlalchemy import exc, text

from nimbus_api.config import Settings
from nimbus_api.kit import db
from nimbus_api.kit.db import make_engine


async def _backend_pid(engine: db.AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_that_died_while_idle_is_replaced_before_use(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        first = await _backend_pid(engine)
        admin = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # idle long enough to be checked
        second = await _backend_pid(engine)  # no error: the dead connection was replaced on checkout
        assert second != first
    finally:
        await engine.dispose()


def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[object]:
    """Wrap the coroutine function ``owner.name`` so each call is recorded (its first argument) and still
    runs for real; returns the record."""
    calls: list[object] = []
    real = getattr(owner, name)

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


async def test_a_connection_returned_a_moment_ago_is_not_checked_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.database_url
    pings = _count_calls(monkeypatch, db, "_ping")
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        pid = await _backend_pid(engine)  # a new connection: not checked
        for _ in range(5):
            assert await _backend_pid(engine) == pid
        assert pings == []
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
        assert await _backend_pid(engine) == pid
        assert len(pings) == 1
    finally:
        await engine.dispose()


async def test_a_new_connection_learns_the_array_types_in_one_query(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.database_url
    lookups = _count_calls(monkeypatch, asyncpg.connection.Connection, "_introspect_types")
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            assert len(lookups) == 1  # at connect: every array type in one catalog query
            casts = ", ".join(f"CAST(:p{n} AS {t})" for n, t in enumerate(db.ARRAY_PARAMETER_TYPES))
            await conn.execute(text(f"SELECT {casts}"), {f"p{n}": [] for n in range(len(db.ARRAY_PARAMETER_TYPES))})
            assert len(lookups) == 1  # a statement binding them asks the catalog nothing more
    finally:
        await engine.dispose()


async def test_connections_opened_before_a_failing_one_go_back_to_the_pool(settings: Settings) -> None:
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=2, max_overflow=0, pool_timeout=0.2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # the third one waits for a free slot that never comes
            with pytest.raises(exc.TimeoutError):
                await db.open_connections(engine, 3)
        # closed, not left for the garbage collector to terminate (with an error in the log)
        assert [str(w.message) for w in caught if "non-checked-in" in str(w.message)] == []
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert engine.sync_engine.pool.checkedin() == 2  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
