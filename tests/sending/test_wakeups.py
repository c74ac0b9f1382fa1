"""Sender wake-ups against the real Redis: one sender per inbox, no wake lost while a sender finishes,
lost queue entries revived by the sweeper's wake."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from nimbus_api.sending.wakeups import Wakeups

QUEUE = "nimbus:test:wake-queue"


@pytest.fixture
async def wakeups(redis_url: str) -> AsyncIterator[Wakeups]:
    redis: ArqRedis = await create_pool(RedisSettings.from_dsn(redis_url))
    yield Wakeups(redis, queue_name=f"{QUEUE}:{uuid.uuid4()}", active_ttl=60.0)
    await redis.aclose()


async def jobs(wakeups: Wakeups) -> list[str]:
    return sorted(job.job_id or "" for job in await wakeups.redis.queued_jobs(queue_name=wakeups.queue_name))


async def test_one_sender_per_inbox_and_a_wake_while_it_runs_makes_it_look_again(wakeups: Wakeups) -> None:
    inbox = uuid.uuid4()
    assert await wakeups.wake([inbox]) == 1
    first = await jobs(wakeups)
    assert len(first) == 1 and first[0].startswith(f"send:{inbox}:")
    assert await wakeups.wake([inbox, inbox]) == 0  # queued or running already: no second sender
    assert await jobs(wakeups) == first
    # The sender found nothing due, but wakes came after it started: it must look again, once.
    assert await wakeups.finish(inbox) is False
    assert await wakeups.finish(inbox) is True  # nothing came since: the inbox is idle
    # A wake after that (the race this closes: the sender is returning, arq still holds its job) gets a
    # sender of its own instead of being dropped.
    assert await wakeups.wake([inbox]) == 1
    assert len(await jobs(wakeups)) == 2


async def test_the_wake_that_lands_between_the_last_look_and_the_stop_is_not_lost(wakeups: Wakeups) -> None:
    inbox = uuid.uuid4()
    await wakeups.wake([inbox])
    assert await wakeups.finish(inbox) is False  # the wake that enqueued it
    # Nothing due at its next look; a dispatcher commits and wakes just before the sender's finish:
    await wakeups.wake([inbox])
    assert await wakeups.finish(inbox) is False  # ... so it looks again and finds those messages
    # ... or just after it: then the inbox is idle and the wake enqueues a new sender.
    assert await wakeups.finish(inbox) is True
    assert await wakeups.wake([inbox]) == 1
    assert len(await jobs(wakeups)) == 2


async def test_the_sweepers_wake_revives_an_inbox_whose_job_was_lost(wakeups: Wakeups) -> None:
    inbox, other = uuid.uuid4(), uuid.uuid4()
    await wakeups.wake([inbox, other])
    lost = next(job for job in await jobs(wakeups) if job.startswith(f"send:{inbox}:"))
    await wakeups.redis.delete(f"arq:job:{lost}")
    await wakeups.redis.zrem(wakeups.queue_name, lost)
    assert await wakeups.wake([inbox, other]) == 0  # a dispatcher's wake trusts the mark
    assert await wakeups.wake([inbox, other], revive=True) == 1  # the sweeper checks arq holds the job
    remaining = await jobs(wakeups)
    assert len(remaining) == 2 and lost not in remaining
    assert await wakeups.wake([inbox, other], revive=True) == 0  # both held by arq now


async def test_a_sender_that_stops_early_leaves_the_inbox_idle(wakeups: Wakeups) -> None:
    inbox = uuid.uuid4()
    await wakeups.wake([inbox])
    await wakeups.release(inbox)  # disabled, or its login failed
    assert await wakeups.wake([inbox]) == 1


async def test_a_slice_that_ran_out_hands_the_inbox_to_its_successor(wakeups: Wakeups) -> None:
    inbox = uuid.uuid4()
    await wakeups.wake([inbox])
    await wakeups.force(inbox)  # the successor
    assert len(await jobs(wakeups)) == 2
    assert await wakeups.wake([inbox]) == 0  # the successor holds the mark
    assert await wakeups.wake([inbox], revive=True) == 0
