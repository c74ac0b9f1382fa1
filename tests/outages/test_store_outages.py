"""Store outages with real processes: ``nimbus worker`` subprocesses sending a campaign to an SMTP sink
while the test restarts the real Redis or PostgreSQL they use (private servers: ``conftest``).

Each test checks, afterwards, that every message was delivered exactly once and recorded ``sent``, that
no worker exited, and that each worker logged an outage once when it began (``store_unavailable``) and
once when it ended (``store_recovered``), not once per failed operation.

The workers pace at 10 sends per second per connection, so every send asks Redis for its turn: a Redis
outage meets the senders mid-chunk. Dispatch and sweep are the workers' own crons (every 5 s / 30 s;
the sweep also runs when a worker gets Redis back); the tests enqueue nothing after the outage.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.kit.outage import outage_of
from tests.sending.conftest import Campaigns
from tests.sending.fleet import (
    Workers,
    all_terminal,
    arq,
    assert_every_enrollment_has_a_terminal_first_message,
    deliveries,
    enqueue,
    message_states,
    sending_campaign,
    sink,
)
from tests.servers.private_stores import PrivatePostgres, PrivateRedis
from tests.servers.sink_process import SinkProcess

__all__ = ["arq", "sink"]  # the fixtures, imported for the tests of this module

CONTACTS = 100
RATE = "10"


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str, workers: Workers) -> None:
    """Poll ``check`` (which may itself meet the outage: that counts as not yet) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except Exception as error:
            if outage_of(error, default="postgres") is None:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{workers.logs()}")
        await asyncio.sleep(0.25)


def _events(workers: Workers, directory: Path) -> list[Counter[tuple[str, str]]]:
    """Per worker: how many times each (event, store) of the outage log was written."""
    found = []
    for log in sorted(directory.glob("worker-*.log")):
        seen: Counter[tuple[str, str]] = Counter()
        for line in log.read_text(errors="replace").splitlines():
            if "store_" not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") in ("store_unavailable", "store_recovered"):
                seen[(entry["event"], entry["store"])] += 1
        found.append(seen)
    assert len(found) == len(workers.procs)
    return found


async def _exactly_once(
    sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID, sink: SinkProcess
) -> dict[str, int]:
    await assert_every_enrollment_has_a_terminal_first_message(sm, campaign_id, CONTACTS)
    by_header = await message_states(sm, campaign_id)
    counts = deliveries(sink.records())
    assert Counter(by_header.values()) == {"sent": CONTACTS}, Counter(by_header.values())
    assert set(counts) == set(by_header), "the sink and the database disagree on what was sent"
    assert set(counts.values()) == {1}, "a message was delivered twice"
    return dict(Counter(by_header.values()))


async def _start_campaign(
    campaigns: Campaigns, sink: SinkProcess, settings: Settings, tmp_path: Path
) -> tuple[uuid.UUID, Workers]:
    campaign_id, _ = await sending_campaign(
        campaigns, sink, inboxes=2, contacts=CONTACTS, daily_send_limit=10_000, max_connections=1
    )
    workers = Workers(settings, tmp_path, NIMBUS_SMTP_RATE_PER_CONNECTION=RATE, NIMBUS_LOG_FORMAT="json")
    return campaign_id, workers


async def _under_way(sink: SinkProcess, workers: Workers, count: int) -> None:
    async def enough() -> bool:
        return len(sink.records()) >= count

    await _eventually(enough, 40, f"{count} sends", workers)


def _all_alive(workers: Workers) -> None:
    exited = [p.pid for p in workers.procs if p.poll() is not None]
    assert not exited, f"workers exited: {exited}\n{workers.logs()}"


async def test_a_redis_restart_mid_campaign_is_ridden_out(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    private_redis: PrivateRedis,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    campaign_id, workers = await _start_campaign(campaigns, sink, settings, tmp_path)
    try:
        workers.start(), workers.start()
        await enqueue(arq, "dispatch_tick")
        await _under_way(sink, workers, 30)
        # Gone with everything it held (queue, wake-ups, pace schedules), for 3 s, then empty.
        await asyncio.to_thread(private_redis.restart, 3.0)
        at_restart = len(sink.records())

        async def finished() -> bool:
            return await all_terminal(sessionmaker, campaign_id, CONTACTS) and len(sink.records()) >= CONTACTS

        await _eventually(finished, 90, "every message to be sent after the restart", workers)
        await asyncio.sleep(1.0)  # a worker that exits on the outage would be gone by now
        _all_alive(workers)
    finally:
        workers.kill_all()
    seen = await _exactly_once(sessionmaker, campaign_id, sink)
    for events in _events(workers, tmp_path):
        assert events[("store_unavailable", "redis")] == 1, events
        assert events[("store_recovered", "redis")] == 1, events
    with capsys.disabled():
        print(f"\n[redis restart] delivered_before={at_restart} states={seen}")


async def test_a_postgres_crash_mid_campaign_is_ridden_out(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    private_postgres: PrivatePostgres,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    campaign_id, workers = await _start_campaign(campaigns, sink, settings, tmp_path)
    try:
        workers.start(), workers.start()
        await enqueue(arq, "dispatch_tick")
        await _under_way(sink, workers, 30)
        # Every backend killed at once (``pg_ctl stop -m immediate``), 3 s down, crash recovery at start.
        await asyncio.to_thread(private_postgres.restart, 3.0, "immediate")
        at_restart = len(sink.records())

        async def finished() -> bool:
            return await all_terminal(sessionmaker, campaign_id, CONTACTS) and len(sink.records()) >= CONTACTS

        await _eventually(finished, 90, "every message to be sent after the restart", workers)
        await asyncio.sleep(1.0)
        _all_alive(workers)
    finally:
        workers.kill_all()
    seen = await _exactly_once(sessionmaker, campaign_id, sink)
    for events in _events(workers, tmp_path):
        assert events[("store_unavailable", "postgres")] <= 1, events
        assert events[("store_recovered", "postgres")] == events[("store_unavailable", "postgres")], events
    assert any(e[("store_unavailable", "postgres")] for e in _events(workers, tmp_path))
    with capsys.disabled():
        print(f"\n[postgres crash] delivered_before={at_restart} states={seen}")


async def test_a_worker_started_while_both_stores_are_down_waits_for_them(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    private_postgres: PrivatePostgres,
    private_redis: PrivateRedis,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
) -> None:
    campaign_id, workers = await _start_campaign(campaigns, sink, settings, tmp_path)
    try:
        await enqueue(arq, "dispatch_tick")
        private_redis.stop()
        await asyncio.to_thread(private_postgres.stop, "fast")
        try:
            workers.start()
            await asyncio.sleep(4.0)  # a few backoff rounds against nothing
            _all_alive(workers)
        finally:
            private_redis.start()
            await asyncio.to_thread(private_postgres.start)

        async def finished() -> bool:
            return await all_terminal(sessionmaker, campaign_id, CONTACTS) and len(sink.records()) >= CONTACTS

        await _eventually(finished, 90, "every message to be sent once the stores are up", workers)
        _all_alive(workers)
    finally:
        workers.kill_all()
    await _exactly_once(sessionmaker, campaign_id, sink)
    (events,) = _events(workers, tmp_path)
    assert events[("store_unavailable", "redis")] == 1, events
    assert events[("store_recovered", "redis")] == 1, events


async def test_a_campaign_across_a_redis_restart_and_then_a_postgres_restart(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    private_redis: PrivateRedis,
    private_postgres: PrivatePostgres,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    campaign_id, workers = await _start_campaign(campaigns, sink, settings, tmp_path)
    try:
        workers.start(), workers.start()
        await enqueue(arq, "dispatch_tick")
        await _under_way(sink, workers, 20)
        await asyncio.to_thread(private_redis.restart, 2.0)
        at_redis = len(sink.records())
        await _under_way(sink, workers, at_redis + 20)
        _all_alive(workers)
        await asyncio.to_thread(private_postgres.restart, 2.0, "fast")
        at_postgres = len(sink.records())

        async def finished() -> bool:
            return await all_terminal(sessionmaker, campaign_id, CONTACTS) and len(sink.records()) >= CONTACTS

        await _eventually(finished, 90, "every message to be sent after both restarts", workers)
        await asyncio.sleep(1.0)
        _all_alive(workers)
    finally:
        workers.kill_all()
    seen = await _exactly_once(sessionmaker, campaign_id, sink)
    with capsys.disabled():
        print(f"\n[redis then postgres] delivered_at_redis={at_redis} at_postgres={at_postgres} states={seen}")
