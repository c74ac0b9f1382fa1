"""The distributed pacer against the real Redis at 127.0.0.1:6379.

Each test run uses a random database index (1..15) and a random key prefix, and deletes only the keys
under that prefix afterwards: no FLUSHDB, other databases and other keys are never touched. Two
``Pacer`` instances with their own Redis clients stand for two workers of one deployment.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from nimbus_api.smtp.pacing import Pacer, SlotTimeout

REDIS_BASE = os.environ.get("NIMBUS_TEST_REDIS", "redis://127.0.0.1:6379")
RATE = 5.0

MakePacer = Callable[..., Pacer]


@pytest.fixture
async def make_pacer() -> AsyncIterator[MakePacer]:
    index = 1 + secrets.randbelow(15)
    prefix = f"nimbus-test-pace-{secrets.token_hex(6)}"
    clients: list[Redis] = []

    def factory(rate: float = RATE, **options: object) -> Pacer:
        client = Redis.from_url(f"{REDIS_BASE}/{index}")
        clients.append(client)
        return Pacer(client, rate, prefix=prefix, **options)  # type: ignore[arg-type]

    yield factory
    cleaner = Redis.from_url(f"{REDIS_BASE}/{index}")
    keys = [key async for key in cleaner.scan_iter(match=f"{prefix}:*")]
    if keys:
        await cleaner.delete(*keys)
    await cleaner.aclose()
    for client in clients:
        await client.aclose()


def max_in_any_window(stamps: list[float], window: float = 1.0) -> int:
    """The most timestamps inside any half-open window [t, t + window)."""
    ordered = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def intervals(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def wipe(pacer: Pacer) -> None:
    keys = [key async for key in pacer.redis.scan_iter(match=f"{pacer.prefix}:*")]
    if keys:
        await pacer.redis.delete(*keys)


async def test_two_workers_sharing_one_slot_never_exceed_the_rate(make_pacer: MakePacer) -> None:
    workers = [make_pacer(), make_pacer()]
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + 2.0
    stamps: list[tuple[float, int]] = []

    async def worker(number: int, pacer: Pacer) -> None:
        while loop.time() < end:
            async with pacer.slot("inbox-1", 1) as slot:
                for _ in range(2):  # a short lane, then the slot goes back and the other worker takes it
                    await slot.wait_turn()
                    now = loop.time()
                    if now < end:
                        stamps.append((now, number))
            await asyncio.sleep(0.1)

    await asyncio.gather(*(worker(n, p) for n, p in enumerate(workers)))
    times = [t for t, _ in stamps]
    assert max_in_any_window(times) <= RATE
    assert 9 <= len(times) <= 10  # a schedule at 5/s (1% slack) over 2 s
    assert {n for _, n in stamps} == {0, 1}  # the slot really changed hands
    gaps = intervals(sorted(times))
    assert min(gaps) >= workers[0].spacing / 2  # no two sends close together, handovers included


async def test_a_schedule_not_a_burst_after_idling(make_pacer: MakePacer) -> None:
    pacer = make_pacer()
    loop = asyncio.get_running_loop()
    async with pacer.slot("inbox-1", 1) as slot:
        await slot.wait_turn()
        await asyncio.sleep(0.5)  # an idle slot saves up no turns
        times = []
        for _ in range(6):
            await slot.wait_turn()
            times.append(loop.time())
    gaps = intervals(times)
    assert min(gaps) >= pacer.spacing / 2
    assert times[-1] - times[0] >= 1.0  # six turns after a pause still span a second: no saved-up burst
    assert max_in_any_window(times) == RATE
    assert pacer.metrics.turns == 7
    assert pacer.metrics.max_lateness < 0.1


async def test_late_turns_never_put_more_than_the_rate_in_a_window(make_pacer: MakePacer) -> None:
    pacer = make_pacer()
    loop = asyncio.get_running_loop()

    def busy() -> None:  # a busy event loop: the turn being waited for wakes up late
        time.sleep(0.15)  # blocking the loop is the point

    times: list[float] = []
    lateness: list[float] = []
    async with pacer.slot("inbox-1", 1) as slot:
        for turn in range(10):
            lateness.append(await slot.wait_turn())
            times.append(loop.time())
            if turn in (2, 6):
                loop.call_later(0.1, busy)  # blocks 0.10-0.25 s after this turn; the next is due at 0.2 s
    assert sum(late > 0.03 for late in lateness) == 2  # the lag really made two turns late
    assert max_in_any_window(times) <= RATE
    # The turn after a late one's window is held a guard past the second, not pinned exactly to it: a send
    # that leaves a moment after its turn still cannot share a window with the late one.
    n = pacer.window_sends
    assert (
        min(later - earlier for earlier, later in zip(times, times[n:], strict=False))
        >= 1.0 + pacer.window_guard - 0.001
    )
    gaps = intervals(times)
    assert min(gaps) >= pacer.spacing / 2
    assert times[-1] - times[0] < 9 * pacer.spacing + 0.1  # late turns did not push the whole schedule back


async def test_slots_bound_concurrent_holders_across_workers(make_pacer: MakePacer) -> None:
    workers = [make_pacer(), make_pacer()]
    holding = 0
    peak = 0

    async def hold(pacer: Pacer) -> None:
        nonlocal holding, peak
        async with pacer.slot("inbox-1", 2) as slot:
            assert slot.index in (0, 1)
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.15)
            holding -= 1

    await asyncio.gather(*(hold(workers[n % 2]) for n in range(6)))
    assert peak == 2
    assert sum(p.metrics.leases for p in workers) == 6


async def test_slot_timeout_when_every_slot_is_leased(make_pacer: MakePacer) -> None:
    first, second = make_pacer(), make_pacer(acquire_timeout=0.2)
    async with first.slot("inbox-1", 1):
        with pytest.raises(SlotTimeout):
            async with second.slot("inbox-1", 1):
                pass
    assert second.metrics.slot_timeouts == 1
    async with second.slot("inbox-1", 1) as slot:  # released: free again at once
        assert slot.index == 0


async def test_leases_are_renewed_while_held(make_pacer: MakePacer) -> None:
    holder, other = make_pacer(lease_ttl=0.3), make_pacer(acquire_timeout=0.1)
    async with holder.slot("inbox-1", 1) as slot:
        await asyncio.sleep(0.7)  # more than twice the lease TTL
        with pytest.raises(SlotTimeout):
            async with other.slot("inbox-1", 1):
                pass
        assert not slot.lost
        ttl = await holder.redis.pttl(holder.lease_key("inbox-1", 0))
        assert 0 < ttl <= 300


async def test_recovers_when_redis_is_wiped(make_pacer: MakePacer) -> None:
    pacer = make_pacer()
    loop = asyncio.get_running_loop()
    times: list[float] = []
    async with pacer.slot("inbox-1", 1) as slot:
        for turn in range(6):
            if turn == 3:
                await wipe(pacer)  # leases and schedules gone
            await slot.wait_turn()
            times.append(loop.time())
        assert await pacer.redis.get(pacer.lease_key("inbox-1", 0)) == slot.token.encode()
    assert pacer.metrics.leases_lost == 1
    assert pacer.metrics.leases == 2
    gaps = intervals(times)
    assert min(gaps) >= pacer.spacing / 2  # the holder's own floors survive the wipe
    assert max_in_any_window(times) <= RATE
    assert await pacer.redis.exists(pacer.lease_key("inbox-1", 0)) == 0  # released


async def test_release_hands_the_schedule_to_the_next_holder(make_pacer: MakePacer) -> None:
    first, second = make_pacer(), make_pacer()
    loop = asyncio.get_running_loop()
    async with first.slot("inbox-1", 1) as slot:
        await slot.wait_turn()
        turned = loop.time()
    async with second.slot("inbox-1", 1) as slot:
        await slot.wait_turn()
        assert loop.time() - turned >= first.spacing - 0.002


def test_pacer_validates_arguments() -> None:
    client = Redis.from_url(f"{REDIS_BASE}/0")  # never used: no command is sent
    assert Pacer(client, 5).paced
    assert not Pacer(client, 0).paced  # lanes only
    assert not Pacer(client, None).paced
    for rate in (-1, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            Pacer(client, rate)
    with pytest.raises(ValueError):
        Pacer(client, 5, slack=1.5)


# --- lanes only (rate 0: pacing off, the connection bound still holds across workers) ------------------


def count_calls(pacer: Pacer) -> list[object]:
    """Record every script call the pacer makes (its only way to talk to Redis)."""
    calls: list[object] = []
    call = pacer._call

    async def counting(script: object, keys: list[str], args: list[object]) -> object:
        calls.append(script)
        return await call(script, keys, args)

    pacer._call = counting  # type: ignore[method-assign]
    return calls


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_lanes_only_bounds_slots_across_workers(make_pacer: MakePacer) -> None:
    first, second = make_pacer(0), make_pacer(0)
    third = make_pacer(0, acquire_timeout=0.3)
    loop = asyncio.get_running_loop()
    async with first.slot("inbox-1", 2) as a, second.slot("inbox-1", 2) as b:
        assert {a.index, b.index} == {0, 1}
        started = loop.time()
        with pytest.raises(SlotTimeout):
            async with third.slot("inbox-1", 2):
                pass
        assert loop.time() - started >= 0.2  # it waited for a slot before giving up
        assert third.metrics.slot_timeouts == 1
    async with third.slot("inbox-1", 2) as slot:  # released: free again at once
        assert slot.index in (0, 1)


async def test_lanes_only_peak_concurrent_holders(make_pacer: MakePacer) -> None:
    workers = [make_pacer(0), make_pacer(0), make_pacer(0)]
    holding = 0
    peak = 0

    async def hold(pacer: Pacer) -> None:
        nonlocal holding, peak
        async with pacer.slot("inbox-1", 2) as slot:
            holding += 1
            peak = max(peak, holding)
            for _ in range(3):
                assert await slot.wait_turn() == 0.0
                await asyncio.sleep(0.03)
            holding -= 1

    await asyncio.gather(*(hold(workers[n % 3]) for n in range(9)))
    assert peak == 2
    assert sum(p.metrics.leases for p in workers) == 9
    assert sum(p.metrics.turns for p in workers) == 27


async def test_lanes_only_wait_turn_reserves_nothing_and_never_sleeps(make_pacer: MakePacer) -> None:
    pacer = make_pacer(0)
    assert not pacer.paced
    calls = count_calls(pacer)
    async with pacer.slot("inbox-1", 1) as slot:
        leased = len(calls)
        assert leased == 1  # the acquire script
        results = [await slot.wait_turn() for _ in range(1000)]
        assert len(calls) == leased  # no Redis call at all per turn
        assert await pacer.redis.exists(pacer.next_key("inbox-1", slot.index)) == 0  # no schedule
    assert set(results) == {0.0}
    assert pacer.metrics.turns == 1000
    assert pacer.metrics.max_lateness == 0.0
    assert await pacer.redis.exists(pacer.lease_key("inbox-1", 0), pacer.next_key("inbox-1", 0)) == 0


async def test_lanes_only_lost_lease_is_leased_again(make_pacer: MakePacer) -> None:
    holder = make_pacer(0, lease_ttl=0.3)  # renewed every 0.1 s
    other = make_pacer(0)
    intruder = make_pacer(0, acquire_timeout=0.2)
    async with holder.slot("inbox-1", 2) as slot, other.slot("inbox-1", 2) as kept:
        await holder.redis.delete(holder.lease_key("inbox-1", slot.index))  # expired while we stalled
        await until(lambda: slot.lost)
        assert await slot.wait_turn() == 0.0
        assert not slot.lost
        assert await holder.redis.get(holder.lease_key("inbox-1", slot.index)) == slot.token.encode()
        assert slot.index != kept.index
        assert holder.metrics.leases_lost == 1
        assert holder.metrics.leases == 2
        with pytest.raises(SlotTimeout):  # the bound holds again
            async with intruder.slot("inbox-1", 2):
                pass
    assert await holder.redis.exists(holder.lease_key("inbox-1", 0), holder.lease_key("inbox-1", 1)) == 0


async def test_lanes_only_recovers_when_redis_is_wiped(make_pacer: MakePacer) -> None:
    workers = [make_pacer(0, lease_ttl=0.3), make_pacer(0, lease_ttl=0.3)]
    intruder = make_pacer(0, acquire_timeout=0.2)
    async with workers[0].slot("inbox-1", 2) as a, workers[1].slot("inbox-1", 2) as b:
        await a.wait_turn()
        await wipe(workers[0])  # every lease gone
        await until(lambda: a.lost and b.lost)
        await a.wait_turn()
        await b.wait_turn()
        assert {a.index, b.index} == {0, 1}
        for pacer, slot in zip(workers, (a, b), strict=True):
            assert await pacer.redis.get(pacer.lease_key("inbox-1", slot.index)) == slot.token.encode()
            assert pacer.metrics.leases_lost == 1
        with pytest.raises(SlotTimeout):
            async with intruder.slot("inbox-1", 2):
                pass
        await asyncio.sleep(0.5)  # the new leases are renewed like the first ones
        assert not a.lost
        assert not b.lost


async def test_lanes_only_lost_lease_waits_for_a_free_slot(make_pacer: MakePacer) -> None:
    holder = make_pacer(0, lease_ttl=0.3, acquire_timeout=0.2)
    intruder = make_pacer(0)
    async with holder.slot("inbox-1", 1) as slot:
        await holder.redis.delete(holder.lease_key("inbox-1", 0))
        async with intruder.slot("inbox-1", 1):  # took the slot our holder lost
            await until(lambda: slot.lost)
            with pytest.raises(SlotTimeout):  # no second connection: the holder must wait for a slot
                await slot.wait_turn()
        assert await slot.wait_turn() == 0.0  # free again
        assert await holder.redis.get(holder.lease_key("inbox-1", 0)) == slot.token.encode()
    assert holder.metrics.turns == 1


async def test_lanes_only_spurious_lost_keeps_the_slot(make_pacer: MakePacer) -> None:
    pacer = make_pacer(0)
    async with pacer.slot("inbox-1", 2) as slot:
        index = slot.index
        slot.lost = True  # e.g. a renewal answered "lost" just before a re-lease: the lease is still ours
        await slot.wait_turn()
        assert not slot.lost
        assert slot.index == index
        assert pacer.metrics.leases == 1
        assert pacer.metrics.leases_lost == 0
        other = pacer.lease_key("inbox-1", 1 - index)
        assert await pacer.redis.exists(other) == 0  # no second slot taken
