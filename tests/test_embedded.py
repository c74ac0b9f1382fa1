"""``nimbus dev`` stores: embedded PostgreSQL/Redis (real servers), local and configured modes, master key."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import psutil  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool
from cryptography.fernet import Fernet
from sqlalchemy import text

from nimbus_api.config import Settings
from nimbus_api.embedded import (
    LOCAL_DATABASE_URL,
    LOCAL_REDIS_URL,
    DevStores,
    ensure_dev_master_key,
    port_open,
    resolve_dev_stores,
)
from nimbus_api.kit.db import make_engine

pytestmark = pytest.mark.slow


def _settings(data_dir: Path, **overrides: object) -> Settings:
    # explicit values so that NIMBUS_* variables of the calling shell do not leak in
    values: dict[str, object] = {
        "database_url": None,
        "redis_url": None,
        "master_keys": [],
        "embedded": "always",
        "data_dir": data_dir,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _server_pids(data_dir: Path) -> tuple[int, int]:
    postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])
    redis_server = int((data_dir / "redis" / "redis.pid").read_text().strip())
    return postmaster, redis_server


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _assert_stopped(pids: tuple[int, ...]) -> None:
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in pids), pids


async def _write(stores: DevStores) -> None:
    conn = await asyncpg.connect(stores.database_url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO probe VALUES (1, 'kept') ON CONFLICT (id) DO NOTHING")
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(stores.redis_url)
    try:
        assert await client.set("probe", "kept")
    finally:
        await client.aclose()


async def _read(stores: DevStores) -> tuple[str, bytes | None]:
    # through SQLAlchemy (as the app does) and arq's DSN parser (as the worker does)
    engine = make_engine(stores.database_url)
    try:
        async with engine.connect() as conn:
            note = (await conn.execute(text("SELECT note FROM probe WHERE id = 1"))).scalar_one()
    finally:
        await engine.dispose()
    pool = await create_pool(RedisSettings.from_dsn(stores.redis_url))
    try:
        value = await pool.get("probe")
    finally:
        await pool.aclose()
    return note, value


async def test_embedded_stores_persist_and_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "nimbus"
    settings = _settings(data_dir)

    with resolve_dev_stores(settings) as stores:
        assert stores.mode == "embedded"
        assert stores.database_url.startswith("postgresql://postgres@/nimbus?host=")
        assert stores.redis_url.startswith(("unix://", "redis://127.0.0.1:"))
        await _write(stores)
        first_pids = _server_pids(data_dir)
    _assert_stopped(first_pids)
    stores.close()  # idempotent

    # a crash of the whole machine leaves pid files naming processes that are now something else
    (data_dir / "postgres" / "postmaster.pid").write_text(f"{os.getpid()}\n{data_dir}\n0\n5432\n\n\n\n\n")
    (data_dir / "redis" / "redis.pid").write_text(f"{os.getpid()}\n")

    with resolve_dev_stores(settings) as again:
        assert await _read(again) == ("kept", b"kept")
        second_pids = _server_pids(data_dir)
    _assert_stopped(second_pids)
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert (data_dir / "redis" / "appendonly.aof").exists()


def test_servers_orphaned_by_a_crashed_run_are_replaced(tmp_path: Path) -> None:
    data_dir = tmp_path / "nimbus"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from nimbus_api.config import Settings\n"
        "from nimbus_api.embedded import resolve_dev_stores\n"
        "resolve_dev_stores(Settings(database_url=None, redis_url=None, embedded='always',"
        " data_dir=Path(sys.argv[1])))\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:  # log lines first
            if line.strip() == b"ready":
                break
        else:
            pytest.fail("the child never got its stores ready")
        orphan_pids = _server_pids(data_dir)
    finally:
        child.send_signal(signal.SIGKILL)  # no close(), no atexit: the servers keep running
        child.wait()
    assert not any(_gone(pid) for pid in orphan_pids)

    with resolve_dev_stores(_settings(data_dir)) as stores:
        _assert_stopped(orphan_pids)
        asyncio.run(_write(stores))
        new_pids = _server_pids(data_dir)
    _assert_stopped(new_pids)


async def test_unset_redis_is_embedded_next_to_a_configured_database(tmp_path: Path) -> None:
    database_url = "postgresql://app:pw@db.invalid:5432/nimbus"
    with resolve_dev_stores(_settings(tmp_path, database_url=database_url)) as stores:
        assert stores.mode == "embedded"
        assert stores.database_url == database_url
        client = aioredis.Redis.from_url(stores.redis_url)
        assert await client.ping()
        await client.aclose()
    assert not (tmp_path / "postgres").exists()


def test_configured_urls_are_used_as_given_and_passwords_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        tmp_path,
        database_url="postgresql+asyncpg://app:s3cret-db@db.invalid:5432/nimbus",
        redis_url="redis://:s3cret-redis@redis.invalid:6379/2",
        embedded="never",
    )
    logger = logging.getLogger("test.embedded")
    with caplog.at_level(logging.INFO, logger="test.embedded"):
        stores = resolve_dev_stores(settings, logger=logger)
    assert stores.mode == "configured"
    assert stores.database_url == settings.database_url
    assert stores.redis_url == settings.redis_url
    stores.close()
    assert "db.invalid" in caplog.text
    assert "s3cret" not in caplog.text
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.skipif(
    not (port_open("127.0.0.1", 5432) and port_open("127.0.0.1", 6379)),
    reason="needs PostgreSQL and Redis on 127.0.0.1",
)
async def test_local_servers_are_used_when_listening(tmp_path: Path) -> None:
    with resolve_dev_stores(_settings(tmp_path, embedded="auto")) as stores:
        assert (stores.mode, stores.database_url, stores.redis_url) == (
            "local",
            LOCAL_DATABASE_URL,
            LOCAL_REDIS_URL,
        )
        conn = await asyncpg.connect(stores.database_url)
        assert await conn.fetchval("SELECT current_database()") == "nimbus"
        await conn.close()


def test_dev_master_key_is_generated_once_with_mode_0600(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "fresh" / "dir"
    settings = _settings(data_dir)
    logger = logging.getLogger("test.embedded")
    with caplog.at_level(logging.INFO, logger="test.embedded"):
        key = ensure_dev_master_key(settings, logger=logger)
    key_file = data_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == key
    Fernet(key.encode())  # a valid Fernet key
    assert key not in caplog.text
    assert "generated dev master key" in caplog.text

    assert ensure_dev_master_key(settings) == key  # reused
    assert ensure_dev_master_key(_settings(data_dir, embedded="auto")) == key

    configured = Fernet.generate_key().decode()
    assert ensure_dev_master_key(_settings(tmp_path / "other", master_keys=configured)) == configured
    assert not (tmp_path / "other").exists()
