"""Fixed-window counters in Redis (Redis is the rate-limit store; Postgres stays the truth).

``hit`` counts one event against ``limit`` per ``window`` seconds and returns how many seconds remain
in the window when the limit is already used up (``None`` when the event is allowed). The increment and
the expiry are one Lua script, so a crash between them cannot leave a counter that never expires.
"""

from __future__ import annotations

from redis.asyncio import Redis

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""
_PEEK = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('TTL', KEYS[1])
return {count, ttl}
"""

PREFIX = "nimbus:rl:"


async def hit(redis: Redis, key: str, *, limit: int, window: int) -> int | None:
    """Count one event; ``None`` if allowed, else the seconds until the window resets."""
    count, ttl = await redis.eval(_HIT, 1, PREFIX + key, str(window))  # type: ignore[misc]
    return None if int(count) <= limit else max(1, int(ttl))


async def peek(redis: Redis, key: str, *, limit: int) -> int | None:
    """Like ``hit`` without counting: ``None`` while under the limit."""
    count, ttl = await redis.eval(_PEEK, 1, PREFIX + key)  # type: ignore[misc]
    return None if int(count) < limit else max(1, int(ttl))


async def reset(redis: Redis, key: str) -> None:
    await redis.delete(PREFIX + key)
