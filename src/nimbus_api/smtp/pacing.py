"""Per-connection send pacing across every worker of the deployment, in Redis: a schedule, not a bucket;
and, always, a deployment-wide bound on each inbox's open connections.

Each inbox has ``max_connections`` *slots*. A worker leases a slot before it sends (``SET NX PX`` with a
random token, renewed every third of ``lease_ttl`` while held, deleted on release), so across all
workers an inbox never has more than ``max_connections`` connections sending. Hold a slot for as long as
you use one SMTP connection for it (a "lane"); ``SmtpPool.send(before_send=slot.wait_turn)`` works per
message as well.

Lanes only (``rate_per_connection`` 0 or ``None``, i.e. ``NIMBUS_SMTP_RATE_PER_CONNECTION=0``, pacing
off; ``Pacer.paced`` is False): slots are leased, renewed and released exactly as when paced, but there
is no schedule: ``wait_turn`` reserves nothing, never sleeps and returns 0.0 at once. The mode exists
because the in-process ``SmtpPool`` bounds connections per worker only: with no pacer at all, N workers
could open N x ``max_connections`` connections to one inbox. A lanes-only ``wait_turn`` calls Redis only
after the renewer found the lease lost (``slot.lost``): it checks the lease and, when it really is gone
(expired while the worker was stalled, or Redis wiped), leases a slot again before returning, so the
bound holds again (``SlotTimeout`` when every slot stays taken meanwhile).

Paced (``rate_per_connection`` > 0): per slot, one Lua script reserves the next send time on Redis's
clock (``redis.call('TIME')``)::

    t    = max(now, next, floor)          -- floor: from this holder's own recent turns, see below
    next = t + spacing                    -- spacing = (1 / rate) * (1 + slack)

and the caller sleeps until ``t``. Each reservation is one step of a schedule: an idle slot does not save
up turns, so there is no burst after a pause, and consecutive sends of one slot are ``spacing`` apart on
the schedule. Timing is never perfect (a turn wakes up a little late when the event loop is busy), so the
guarantee is stated on what actually happened, with ``n = ceil(rate)`` (``rate`` for whole rates):

* window floor: a turn is never earlier than one second plus ``window_guard`` (default 5 ms) after the
  turn ``n`` turns before it, so no half-open one-second window holds more than ``n`` sends of one
  connection, however late turns were. The guard is for what happens between a turn and its send: the
  caller sends a few microseconds after ``wait_turn`` returns, or milliseconds later when the OS
  preempts the process in between, and with no guard a send pinned exactly one second after a late
  one lands inside that second whenever the earlier send left a little later than the later one
  (bench_pacing caught this: 6 sends in a window, once in a CI run). A late turn does not push the
  schedule back (the achieved rate stays ``1 / spacing``) unless it is later than the slack minus the
  guard; it only shortens the gap to the next turn, never below half a ``spacing`` (the gap floor).
* both floors travel with the reservation (the holder's recent turns, mapped to Redis's clock), and on
  release a floor of ``last turn + spacing`` is written to the schedule, so the next holder of the slot
  (maybe another worker) starts no earlier than ``spacing`` after our last send. The same floors are
  also enforced on this process's monotonic clock (a local guard against reply-latency jitter).
* ``slack`` (default 1%): on an exact ``1 / rate`` schedule, ``rate + 1`` sends span exactly one second,
  and a fraction of a millisecond of jitter would put them in one window; 1% slack leaves 10 ms per
  window at 5/s (5 ms of them for the guard, 5 ms to absorb a late turn) and costs 1% of throughput.

The reservation script also checks the lease token (and extends the lease): a holder that lost its lease
(expired while the worker was stalled, or Redis was wiped) cannot reserve, and leases a slot again.

Redis is only the rate-limit store: nothing here is needed to know what was sent. If Redis is wiped
mid-run, leases are taken again and schedules restart from "now"; the holder's floors still space its own
next sends, so at worst one window resets for a slot that changed hands at that moment. If Redis is
unreachable, ``slot()`` and a paced (or recovering) ``wait_turn`` raise the client's ``RedisError``: the
caller should defer the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

DEFAULT_RATE_PER_CONNECTION = 5.0
"""Sends per second per connection (``NIMBUS_SMTP_RATE_PER_CONNECTION``)."""

DEFAULT_PREFIX = "nimbus:pace"

# KEYS: the inbox's lease keys, slot 0 first. ARGV: token, lease ttl (ms), first slot to try.
_ACQUIRE = """
local n = #KEYS
local start = tonumber(ARGV[3])
for i = 0, n - 1 do
  local index = (start + i) % n
  if redis.call('SET', KEYS[index + 1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return index
  end
end
return -1
"""

# KEYS: lease, next. ARGV: token, spacing (us), key ttl (ms), floor (us, 0 for none).
# Returns nil when the lease is not ours, else {t, now} in microseconds of Redis's clock, as strings.
_RESERVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local at = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[4]))
redis.call('SET', KEYS[2], string.format('%.0f', at + tonumber(ARGV[2])), 'PX', ARGV[3])
return {string.format('%.0f', at), string.format('%.0f', now)}
"""

# KEYS: lease. ARGV: token, ttl (ms). 1 when still ours (and extended), 0 when lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease, next. ARGV: token, floor (us, 0 for none), key ttl (ms).
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
local floor = tonumber(ARGV[2])
if floor > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
"""


class SlotTimeout(TimeoutError):
    """Every slot of the inbox stayed leased (by this or other workers) for ``acquire_timeout``."""


@dataclass
class PacerMetrics:
    turns: int = 0
    leases: int = 0
    leases_lost: int = 0  # the lease was found gone (expired or Redis wiped): leased again
    slot_timeouts: int = 0
    max_lateness: float = 0.0  # seconds a turn started after its reserved time (event-loop lag)


class Pacer:
    """Paces sends per connection across workers: ``async with pacer.slot(account, n) as slot: await slot.wait_turn()``.

    ``rate_per_connection`` sends per second per slot (0 or ``None``: lanes only, the slots still bound the
    inbox's connections across workers but ``wait_turn`` never waits; see ``paced``); ``lease_ttl``
    seconds until a slot of a crashed worker is free again (renewed every third of it while held);
    ``acquire_timeout`` bounds the wait for a free slot (``SlotTimeout``); ``poll_interval`` is how often
    a waiting worker checks for one; ``slack`` and ``window_guard`` are explained in the module docstring.
    """

    def __init__(
        self,
        redis: Redis,
        rate_per_connection: float | None = DEFAULT_RATE_PER_CONNECTION,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease_ttl: float = 10.0,
        acquire_timeout: float = 30.0,
        poll_interval: float = 0.05,
        slack: float = 0.01,
        window_guard: float = 0.005,
    ) -> None:
        rate = 0.0 if rate_per_connection is None else float(rate_per_connection)
        if not rate >= 0 or math.isinf(rate):  # NaN fails ``>= 0``
            raise ValueError("rate_per_connection must be positive, or 0/None for lanes only")
        if (
            lease_ttl <= 0
            or acquire_timeout < 0
            or poll_interval <= 0
            or not 0 <= slack < 1
            or not 0 <= window_guard < 1
        ):
            raise ValueError("invalid pacer timing")
        self.redis = redis
        self.rate = rate
        self.spacing = (1.0 / rate) * (1.0 + slack) if rate > 0 else 0.0  # 0.0: lanes only, no schedule
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self.acquire_timeout = acquire_timeout
        self.poll_interval = poll_interval
        self.metrics = PacerMetrics()
        self._spacing_us = round(self.spacing * 1_000_000)
        self.window_guard = window_guard
        self._window_us = 1_000_000 + round(window_guard * 1_000_000)  # the window floor's distance
        self.window_sends = max(1, math.ceil(rate - 1e-9))  # most sends in any one-second window (when paced)
        # Keys outlive a lease: the next holder must still see the schedule.
        self._key_ttl_ms = max(round(lease_ttl * 1000), 2 * round(self.spacing * 1000) + 1000)
        self._lease_ttl_ms = round(lease_ttl * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._reserve = redis.register_script(_RESERVE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def paced(self) -> bool:
        """True when turns are spaced by a rate; False in lanes-only mode (slots leased, no schedule)."""
        return self.rate > 0

    def lease_key(self, account_id: str, index: int) -> str:
        return f"{self.prefix}:{{{account_id}}}:lease:{index}"  # hash tag: one inbox's keys on one cluster slot

    def next_key(self, account_id: str, index: int) -> str:
        return f"{self.prefix}:{{{account_id}}}:next:{index}"

    @contextlib.asynccontextmanager
    async def slot(self, account_id: str, max_connections: int) -> AsyncIterator[PaceSlot]:
        """Lease one of the inbox's ``max_connections`` slots for the block; released (and its floor kept) after."""
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        slot = PaceSlot(self, account_id, max_connections)
        await slot._lease(random.randrange(max_connections))  # noqa: S311 - spreading, not security
        try:
            yield slot
        finally:
            await slot._close()

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        return await script(keys=keys, args=args)


class PaceSlot:
    """One leased slot of an inbox: ``wait_turn()`` before each send on its connection."""

    def __init__(self, pacer: Pacer, account_id: str, max_connections: int) -> None:
        self.pacer = pacer
        self.account_id = account_id
        self.max_connections = max_connections
        self.index = -1
        self.token = secrets.token_hex(12)
        self.lost = False
        self._renewer: asyncio.Task[None] | None = None
        # Our last ``pacer.window_sends`` turns: loop time, and the same moment on Redis's clock (us).
        self._recent_local: deque[float] = deque(maxlen=pacer.window_sends)
        self._recent_server: deque[int] = deque(maxlen=pacer.window_sends)
        self._closed = False

    async def wait_turn(self) -> float:
        """Sleep until this slot's next turn; returns how late the turn started (seconds, >= 0).

        Lanes only (``not pacer.paced``): returns 0.0 at once, after leasing a slot again if the lease was lost.
        """
        if self._closed:
            raise RuntimeError("this pacing slot was released")
        pacer = self.pacer
        if not pacer.paced:
            if self.lost:
                await self._recover()
            pacer.metrics.turns += 1
            return 0.0
        loop = asyncio.get_running_loop()
        while True:
            floor = self._floor(pacer._spacing_us // 2)
            keys = [pacer.lease_key(self.account_id, self.index), pacer.next_key(self.account_id, self.index)]
            result = await pacer._call(pacer._reserve, keys, [self.token, pacer._spacing_us, pacer._key_ttl_ms, floor])
            if result is not None:
                break
            pacer.metrics.leases_lost += 1
            self.lost = True
            await self._lease(self.index)
        received = loop.time()
        at_us, now_us = int(result[0]), int(result[1])
        planned = received + (at_us - now_us) / 1_000_000
        start = planned
        if self._recent_local:  # the same floors on our own clock
            start = max(start, self._recent_local[-1] + pacer.spacing / 2)
            if len(self._recent_local) == pacer.window_sends:
                start = max(start, self._recent_local[0] + pacer._window_us / 1_000_000)
        delay = start - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        actual = loop.time()
        lateness = max(0.0, actual - planned)
        self._recent_local.append(actual)
        self._recent_server.append(at_us + round(lateness * 1_000_000))
        pacer.metrics.turns += 1
        pacer.metrics.max_lateness = max(pacer.metrics.max_lateness, lateness)
        return lateness

    async def _recover(self) -> None:
        """Lanes only: the renewer saw the lease lost. Check it (a renewal that raced a re-lease may have
        said so wrongly; this also extends it), and lease a slot again when it really is gone."""
        pacer = self.pacer
        key = pacer.lease_key(self.account_id, self.index)
        if int(await pacer._call(pacer._renew, [key], [self.token, pacer._lease_ttl_ms])):
            self.lost = False
            return
        pacer.metrics.leases_lost += 1
        await self._lease(self.index)

    def _floor(self, gap_us: int) -> int:
        """Earliest next turn on Redis's clock: ``gap_us`` after our last turn, and one second plus the
        window guard after the turn ``window_sends`` turns back (0 when we have no turns yet)."""
        if not self._recent_server:
            return 0
        floor = self._recent_server[-1] + gap_us
        if len(self._recent_server) == self.pacer.window_sends:
            floor = max(floor, self._recent_server[0] + self.pacer._window_us)
        return floor

    async def _lease(self, preferred: int) -> None:
        pacer = self.pacer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + pacer.acquire_timeout
        keys = [pacer.lease_key(self.account_id, i) for i in range(self.max_connections)]
        while True:
            index = int(await pacer._call(pacer._acquire, keys, [self.token, pacer._lease_ttl_ms, preferred]))
            if index >= 0:
                break
            pause = pacer.poll_interval * random.uniform(0.5, 1.5)  # noqa: S311
            if loop.time() + pause > deadline:
                pacer.metrics.slot_timeouts += 1
                raise SlotTimeout(
                    f"all {self.max_connections} pacing slots of inbox {self.account_id} stayed leased "
                    f"for {pacer.acquire_timeout:g} s"
                )
            await asyncio.sleep(pause)
        self.index = index
        self.lost = False
        pacer.metrics.leases += 1
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name=f"pace-renew-{self.account_id}")

    async def _renew_forever(self) -> None:
        pacer = self.pacer
        while True:
            await asyncio.sleep(pacer.lease_ttl / 3)
            with contextlib.suppress(RedisError, OSError):
                renewed = await pacer._call(
                    pacer._renew, [pacer.lease_key(self.account_id, self.index)], [self.token, pacer._lease_ttl_ms]
                )
                if not int(renewed):
                    self.lost = True  # the next wait_turn leases a slot again

    async def _close(self) -> None:
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
        if self.index < 0:
            return
        pacer = self.pacer
        floor = self._floor(pacer._spacing_us)
        keys = [pacer.lease_key(self.account_id, self.index), pacer.next_key(self.account_id, self.index)]
        release = asyncio.ensure_future(pacer._call(pacer._release, keys, [self.token, floor, pacer._key_ttl_ms]))
        release.add_done_callback(_retrieve)
        # Shielded: a sender cancelled here still frees its slot; if Redis fails, the lease expires by itself.
        with contextlib.suppress(RedisError, OSError):
            await asyncio.shield(release)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" for a release that failed


__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_RATE_PER_CONNECTION",
    "PaceSlot",
    "Pacer",
    "PacerMetrics",
    "SlotTimeout",
]
