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


Disruption = Callable[[], Awaitable[None]]


class Run:
    """A campaign of ``CONTACTS`` over 2 inboxes, sent by real workers, across ``disruptions``."""

    def __init__(
        self,
        campaigns: Campaigns,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        sink: SinkProcess,
        arq: ArqRedis,
        tmp_path: Path,
    ) -> None:
        self.campaigns, self.sm, self.sink, self.arq, self.tmp_path = campaigns, sessionmaker, sink, arq, tmp_path
        self.workers = Workers(settings, tmp_path, NIMBUS_SMTP_RATE_PER_CONNECTION=RATE, NIMBUS_LOG_FORMAT="json")
        self.delivered_at: list[int] = []

    async def across(self, disruptions: list[tuple[int, Disruption]], *, workers: int = 2) -> dict[str, int]:
        """Start ``workers``, then run each disruption once the sink holds that many messages; wait for
        every message to be sent, check that it was delivered exactly once and recorded ``sent``, and
        that no worker exited (the states seen are returned)."""
        campaign_id, _ = await sending_campaign(
            self.campaigns, self.sink, inboxes=2, contacts=CONTACTS, daily_send_limit=10_000, max_connections=1
        )
        try:
            for _ in range(workers):
                self.workers.start()
            await enqueue(self.arq, "dispatch_tick")
            for count, disrupt in disruptions:
                await self._delivered(count)
                _all_alive(self.workers)
                await disrupt()
                self.delivered_at.append(len(self.sink.records()))

            async def finished() -> bool:
                return await all_terminal(self.sm, campaign_id, CONTACTS) and len(self.sink.records()) >= CONTACTS

            await _eventually(finished, 90, "every message to be sent", self.workers)
            await asyncio.sleep(1.0)  # a worker that exits on an outage would be gone by now
            _all_alive(self.workers)
        finally:
            self.workers.kill_all()
        await assert_every_enrollment_has_a_terminal_first_message(self.sm, campaign_id, CONTACTS)
        by_header = await message_states(self.sm, campaign_id)
        counts = deliveries(self.sink.records())
        assert Counter(by_header.values()) == {"sent": CONTACTS}, Counter(by_header.values())
        assert set(counts) == set(by_header), "the sink and the database disagree on what was sent"
        assert set(counts.values()) == {1}, "a message was delivered twice"
        return dict(Counter(by_header.values()))

    async def _delivered(self, count: int) -> None:
        async def enough() -> bool:
            return len(self.sink.records()) >= count

        await _eventually(enough, 40, f"{count} sends", self.workers)

    def events(self) -> list[Counter[tuple[str, str]]]:
        return _events(self.workers, self.tmp_path)


@pytest.fixture
def run(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    sink: SinkProcess,
    arq: ArqRedis,
    tmp_path: Path,
) -> Run:
    return Run(campaigns, sessionmaker, settings, sink, arq, tmp_path)


def _all_alive(workers: Workers) -> None:
    exited = [p.pid for p in workers.procs if p.poll() is not None]
    assert not exited, f"workers exited: {exited}\n{workers.logs()}"


def restart_redis(server: PrivateRedis, down_for: float) -> Disruption:
    """Gone with everything it held (queue, wake-ups, pace schedules) for ``down_for``, then back empty."""
    return lambda: asyncio.to_thread(server.restart, down_for)


def restart_postgres(server: PrivatePostgres, down_for: float, mode: str) -> Disruption:
    """``immediate``: every backend killed at once, crash recovery at start; ``fast``: a clean shutdown."""
    return lambda: asyncio.to_thread(server.restart, down_for, mode)  # type: ignore[arg-type]


async def test_a_redis_restart_mid_campaign_is_ridden_out(
    run: Run, private_redis: PrivateRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = await run.across([(30, restart_redis(private_redis, 3.0))])
    for events in run.events():
        assert events[("store_unavailable", "redis")] == 1, events
        assert events[("store_recovered", "redis")] == 1, events
    with capsys.disabled():
        print(f"\n[redis restart] delivered_before={run.delivered_at} states={seen}")


async def test_a_postgres_crash_mid_campaign_is_ridden_out(
    run: Run, private_postgres: PrivatePostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = await run.across([(30, restart_postgres(private_postgres, 3.0, "immediate"))])
    events = run.events()
    for one in events:
        assert one[("store_unavailable", "postgres")] <= 1, one
        assert one[("store_recovered", "postgres")] == one[("store_unavailable", "postgres")], one
    assert any(one[("store_unavailable", "postgres")] for one in events)
    with capsys.disabled():
        print(f"\n[postgres crash] delivered_before={run.delivered_at} states={seen}")


async def test_a_campaign_across_a_redis_restart_and_then_a_postgres_restart(
    run: Run, private_redis: PrivateRedis, private_postgres: PrivatePostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = await run.across(
        [(20, restart_redis(private_redis, 2.0)), (50, restart_postgres(private_postgres, 2.0, "fast"))]
    )
    with capsys.disabled():
        print(f"\n[redis then postgres] delivered_before={run.delivered_at} states={seen}")


async def test_a_worker_started_while_both_stores_are_down_waits_for_them(
    run: Run, private_postgres: PrivatePostgres, private_redis: PrivateRedis
) -> None:
    private_redis.stop()
    await asyncio.to_thread(private_postgres.stop, "fast")
    try:
        run.workers.start()
        # until the worker has met the outage (its start-up may take seconds on a busy machine), then a few
        # backoff rounds against nothing
        deadline = asyncio.get_running_loop().time() + 60.0
        while not any(e[("store_unavailable", "redis")] for e in run.events()):
            assert asyncio.get_running_loop().time() < deadline, f"no outage seen\n{run.workers.logs()}"
            _all_alive(run.workers)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        _all_alive(run.workers)
    finally:
        private_redis.start()
        await asyncio.to_thread(private_postgres.start)
    await run.across([], workers=0)
    (events,) = run.events()
    assert events[("store_unavailable", "redis")] == 1, events
    assert events[("store_recovered", "redis")] == 1, events
