"""Sender wake-ups that are never lost: one sender job per inbox queued or running, and a wake that comes
while it runs makes it look at the database again before it stops.

arq's own de-duplication (a fixed job id per inbox) drops a wake that arrives while the job with that id
is still in progress. A sender that has just found nothing due and is returning is still in progress, so
a dispatcher that committed new messages at that moment lost its wake, and the messages waited for the
sweeper. Here the de-duplication is two Redis keys per inbox, and each move below is one atomic Redis
step (a Lua script where it reads a key before it writes):

* ``active``: a sender job is queued or running; its value is that job's arq id, and its TTL the job's
  timeout (renewed each time the sender looks again, and for its successor), so a worker that died
  holding it frees it by itself;
* ``pending``: messages were committed since the sender last looked.

The states and moves of one inbox::

    idle (no active)    --wake-->                  active + pending, a sender job enqueued (new job id)
    active              --wake-->                  pending set, nothing enqueued
    active, sender finds nothing due:
        pending set     --finish-->                pending cleared, the sender looks again
        pending unset   --finish-->                idle (active deleted), the sender stops
    active, slice over  --the sender enqueues its successor-->  active (kept)
    active, sender stops (inbox disabled, login failed)  --release-->  idle

Why nothing is lost: a wake runs after its messages are committed. If its script runs before the
sender's ``finish``, ``finish`` sees ``pending`` and the sender looks again, after that commit. If it runs
after ``finish``, ``active`` is gone and the wake enqueues a new sender. The two scripts cannot
interleave (Redis runs one script at a time).

Redis is only the signal: wiped, the next wake finds the inbox idle and enqueues a sender, and the
sweeper wakes every inbox that has due messages (``wake(..., revive=True)``): where ``active`` names a
job that arq no longer holds (neither queued nor in progress: its queue entry was lost), a new sender is
enqueued at once instead of waiting out the TTL. An inbox whose sender died (its leases expired) gets a
sender from the sweeper at once (``force``), whatever ``active`` says.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

DEFAULT_PREFIX = "nimbus:wake"

# KEYS: active, pending. ARGV: active ttl (ms), a new job id. Returns 1 when the inbox was idle (active
# now names the new job id, which the caller enqueues), else the job id active names.
_WAKE = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[1]) then
  return 1
end
return redis.call('GET', KEYS[1])
"""

# KEYS: active, pending. ARGV: active ttl (ms). 1: nothing pending, the inbox is idle now (stop);
# 0: a wake came, look again (the active key is kept and extended).
_FINISH = """
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""


class Wakeups:
    """Wakes inbox senders through arq: ``wake`` after a commit, ``finish`` when a sender found nothing due."""

    def __init__(
        self,
        redis: ArqRedis,
        *,
        queue_name: str,
        active_ttl: float,
        function: str = "send_inbox",
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.function = function
        self.prefix = prefix
        self._ttl_ms = round(active_ttl * 1000)
        self._wake = redis.register_script(_WAKE)
        self._finish = redis.register_script(_FINISH)

    def _keys(self, account_id: uuid.UUID | str) -> list[str]:
        base = f"{self.prefix}:{{{account_id}}}"  # hash tag: one inbox's keys on one cluster slot
        return [f"{base}:active", f"{base}:pending"]

    async def wake(self, account_ids: Iterable[uuid.UUID | str], *, revive: bool = False) -> int:
        """Call after the commit that made messages due: each idle inbox gets a sender job, a busy one a
        look again. With ``revive`` (the sweeper), a busy inbox whose job arq no longer holds gets a new
        one. Returns how many jobs were enqueued."""
        enqueued = 0
        for account_id in account_ids:
            job_id = _new_job_id(account_id)
            result = await self._wake(keys=self._keys(account_id), args=[self._ttl_ms, job_id])
            if result == 1:
                await self._enqueue(account_id, job_id)
                enqueued += 1
            elif revive and result is not None and not await self._job_exists(_text(result)):
                await self.force(account_id)
                enqueued += 1
        return enqueued

    async def force(self, account_id: uuid.UUID | str) -> None:
        """Enqueue a sender whatever the keys say (its successor, from a sender whose slice ran out; the
        sweeper, for an inbox whose sender died); the inbox's active mark names the new job."""
        job_id = _new_job_id(account_id)
        await self.redis.set(self._keys(account_id)[0], job_id, px=self._ttl_ms)
        await self._enqueue(account_id, job_id)

    async def finish(self, account_id: uuid.UUID | str) -> bool:
        """A sender found nothing due: True when it may stop (the inbox is idle now), False when a wake
        came meanwhile and it must look again."""
        return bool(int(await self._finish(keys=self._keys(account_id), args=[self._ttl_ms])))

    async def release(self, account_id: uuid.UUID | str) -> None:
        """A sender stopped without finishing its work (the inbox was disabled or its login failed): the
        inbox is idle, so the next wake (or the sweeper, once it sends again) enqueues a sender."""
        await self.redis.delete(*self._keys(account_id))

    async def _enqueue(self, account_id: uuid.UUID | str, job_id: str) -> None:
        await self.redis.enqueue_job(self.function, str(account_id), _job_id=job_id, _queue_name=self.queue_name)

    async def _job_exists(self, job_id: str) -> bool:
        """arq holds the job: queued (its job key) or running (its in-progress key)."""
        return bool(await self.redis.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id))


def _new_job_id(account_id: uuid.UUID | str) -> str:
    """Each sender job has an id of its own: the keys above de-duplicate, not arq's job id."""
    return f"send:{account_id}:{secrets.token_hex(8)}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["DEFAULT_PREFIX", "Wakeups"]
