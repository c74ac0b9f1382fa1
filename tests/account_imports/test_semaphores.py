"""The Redis lease semaphores: all places or none, a full one refuses, an expired lease frees its place,
renewing keeps it."""

from __future__ import annotations

import asyncio
import secrets

from redis.asyncio import Redis

from nimbus_api.account_imports.semaphores import Semaphores, host_key


async def test_places_are_taken_all_or_none_and_leases_expire(redis: Redis) -> None:
    tag = secrets.token_hex(4)
    a, b = host_key("smtp", f"a-{tag}.example.org"), host_key("imap", f"b-{tag}.example.org")
    sems = Semaphores(redis, lease_seconds=0.4)
    first = await sems.try_acquire([(a, 2), (b, 1)])
    assert first is not None
    assert await sems.try_acquire([(a, 2), (b, 1)]) is None, "b is full"
    assert await sems.holders(a) == 1, "the refused try took no place in a"
    second = await sems.try_acquire([(a, 2)])
    assert second is not None
    assert await sems.try_acquire([(a, 2)]) is None
    await sems.release(second)
    assert await sems.holders(a) == 1
    # the first holder renews, the second (taken again) does not: only the renewed one survives the lease
    third = await sems.try_acquire([(a, 2)])
    assert third is not None
    for _ in range(3):
        await asyncio.sleep(0.2)
        assert await sems.renew(first) == 2
    assert await sems.holders(a) == 1 and await sems.holders(b) == 1
    assert await sems.renew(third) == 0, "its lease ran out: nothing to renew"
    await sems.release(first)
    assert await sems.holders(a) == 0 and await sems.holders(b) == 0
    assert await sems.try_acquire([(a, 1), (a, 2)]) is not None, "one key named twice counts once, at the lower limit"
