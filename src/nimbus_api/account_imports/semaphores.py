"""Counting semaphores in Redis whose places are leases: a holder that dies frees its place by expiry.

A semaphore is a sorted set: member = a holder's token, score = when its lease ends (Redis server time,
milliseconds, so the workers' clocks do not matter). ``try_acquire`` takes one place in every semaphore it
names or in none (one Lua script: a verification needs its SMTP host, its IMAP host and its workspace at
once, and taking them one by one could leave two runners each holding what the other waits for). Expired
places are dropped before counting. ``renew`` moves the lease end of the places a token still holds (an
expired place is not revived: another holder may have it by now); ``release`` gives them back.

Redis is only the store of these counters: the rows' state is in PostgreSQL, and a lost semaphore (Redis
restarted) at worst lets a few more logins run at once until the holders finish.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

PREFIX = "nimbus:importsem:"

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, ARGV[2]) == false and redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[2])
  redis.call('PEXPIRE', key, lease * 2)
end
return 1
"""
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local held = 0
for _, key in ipairs(KEYS) do
  local ends = redis.call('ZSCORE', key, ARGV[2])
  if ends and tonumber(ends) >= now then
    redis.call('ZADD', key, now + lease, ARGV[2])
    held = held + 1
    redis.call('PEXPIRE', key, lease * 2)
  end
end
return held
"""


@dataclass(frozen=True)
class Place:
    """The places one token holds (``keys``), to renew and release together."""

    token: str
    keys: tuple[str, ...]


def host_key(protocol: str, host: str) -> str:
    return f"{PREFIX}{protocol}:{host.lower().rstrip('.')}"


def workspace_key(workspace_id: object) -> str:
    return f"{PREFIX}ws:{workspace_id}"


class Semaphores:
    def __init__(self, redis: Redis, *, lease_seconds: float) -> None:
        self.redis = redis
        self.lease_ms = max(1, int(lease_seconds * 1000))

    async def try_acquire(self, limits: Sequence[tuple[str, int]]) -> Place | None:
        """One place in each ``(key, limit)``, or None (nothing taken) when any is full."""
        merged: dict[str, int] = {}
        for key, limit in limits:
            merged[key] = min(limit, merged.get(key, limit))
        keys = tuple(merged)
        token = secrets.token_hex(12)
        args = [str(self.lease_ms), token, *(str(merged[k]) for k in keys)]
        got = await self.redis.eval(_ACQUIRE, len(keys), *keys, *args)  # type: ignore[misc]
        return Place(token=token, keys=keys) if int(got) == 1 else None

    async def renew(self, place: Place) -> int:
        held = await self.redis.eval(_RENEW, len(place.keys), *place.keys, str(self.lease_ms), place.token)  # type: ignore[misc]
        return int(held)

    async def release(self, place: Place) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in place.keys:
                pipe.zrem(key, place.token)
            await pipe.execute()

    async def holders(self, key: str) -> int:
        """Places in use now (expired ones not counted): for the tests and the benchmark."""
        t = await self.redis.time()
        now = t[0] * 1000 + t[1] // 1000
        return int(await self.redis.zcount(key, now, "+inf"))
