"""A worker that outlives its stores: Redis or PostgreSQL may go away for any length of time.

arq's ``Worker`` raises out of its poll loop at the first Redis error, and the process exits with the
queue unattended until someone restarts it. ``ResilientWorker`` keeps the process and its loop:

* start: connecting to Redis and ``on_startup`` are tried again with backoff until both work;
* poll loop: an iteration that meets an outage (taking jobs, the heartbeat, enqueueing crons) is noted
  in the process's ``Outages`` (one warning when the outage begins, one when it ends) and the loop
  waits ``backoff(n)`` after its n-th failed round in a row (0.5 s doubling to 30 s, jittered), so an
  outage costs a few requests a minute, not a busy loop; redis-py reconnects by itself on the next
  command. A job that could not record its end (its ``finish_job`` met the outage) is collected
  without failing the round: the outage is noted, and the job, still queued if Redis kept it, runs
  again once its in-progress mark expires. When Redis is back, every cron is rescheduled from now
  (the ones that run at startup, the sweeper among them, run at once): no catch-up run per missed
  interval;
* tasks: ``rides_out`` wraps each task function so that an outage it meets becomes arq's ``Retry``
  after the same backoff (the same job runs again, keeping its place, for instance a sender's hold on
  its inbox) instead of a failure with a traceback per job (a job gives up after arq's ``max_tries``;
  the crons then start the work again from what Postgres holds).

What a job was doing when the store went away is safe by construction: Postgres is the truth and every
task is idempotent; a Redis restart that lost the queue is repaired by the crons (the sweeper wakes
every inbox with due messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
from arq.connections import create_pool, log_redis_info
from arq.utils import poll, timestamp_ms
from arq.worker import Retry, Worker

from nimbus_api.kit.outage import Outages, Store, backoff

log = structlog.get_logger(__name__)
Task = TypeVar("Task", bound=Callable[..., Awaitable[Any]])
OUTAGES_KEY = "nimbus_outages"
"""Where the process's ``Outages`` sit in arq's ``ctx``."""


def outages_of(ctx: dict[str, Any]) -> Outages:
    found = ctx.get(OUTAGES_KEY)
    if not isinstance(found, Outages):
        found = ctx[OUTAGES_KEY] = Outages()
    return found


def rides_out(task: Task) -> Task:
    """An outage met by ``task`` (either store) becomes ``Retry``, deferred by ``backoff`` of the job's try."""

    @functools.wraps(task)
    async def wrapper(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        outages = outages_of(ctx)
        try:
            result = await task(ctx, *args, **kwargs)
        except Retry:
            raise
        except Exception as error:
            outage = outages.failed(error)
            if outage is None:
                raise
            raise Retry(defer=backoff(int(ctx.get("job_try", 1)))) from error
        outages.postgres.recovered()
        return result

    return cast(Task, wrapper)


def dump_tasks() -> None:
    """Write every asyncio task's stack to stderr (``SIGUSR2``: what is a worker that looks stuck waiting on?)."""
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


class ResilientWorker(Worker):
    """arq's ``Worker`` whose start and poll loop wait out store outages (see the module docstring).

    ``main`` and ``_poll_iteration`` follow arq 0.28's bodies apart from the outage handling and how
    finished jobs are collected: an arq upgrade must compare them again."""

    def __init__(self, *args: Any, outages: Outages | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outages = outages or Outages()
        self._failed_rounds = 0
        self.ctx[OUTAGES_KEY] = self.outages
        if self._handle_signals:
            self._add_signal_handler(signal.SIGUSR2, lambda _signum: dump_tasks())

    async def main(self) -> None:
        await self._start()
        async for _ in poll(self.poll_delay_s):
            if not await self._iterate():
                continue
            if self.burst:
                if 0 <= self.max_burst_jobs <= self._jobs_started():
                    await asyncio.gather(*self.tasks.values())
                    return
                queued_jobs = await self.pool.zcard(self.queue_name)
                if queued_jobs == 0:
                    await asyncio.gather(*self.tasks.values())
                    return

    async def _start(self) -> None:
        """Redis, then ``on_startup``, each tried again until it works."""
        # ``retry`` is how many of arq's own retries are used up already: all of them, the backoff is ours.
        used_up = self.redis_settings.conn_retries if self.redis_settings else 0
        while self._pool is None:
            try:
                self._pool = await create_pool(
                    self.redis_settings,
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                    retry=used_up,
                )
            except Exception as error:
                await self._wait(error, default="redis")
        self.outages.redis.recovered()
        log.info("worker_starting", functions=sorted(self.functions), queue=self.queue_name)
        with contextlib.suppress(Exception):
            await log_redis_info(self.pool, log.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            while True:
                try:
                    await self.on_startup(self.ctx)
                    break
                except Exception as error:
                    await self._wait(error, default="postgres")
            self.outages.postgres.recovered()
        self._failed_rounds = 0

    async def _poll_iteration(self) -> None:
        """arq's poll iteration, except for how finished job tasks are collected (see the module docstring)."""
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            burst_jobs_remaining = self.max_burst_jobs - self._jobs_started()
            if burst_jobs_remaining < 1:
                return
            count = min(burst_jobs_remaining, count)
        self._collect_finished()
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            now = timestamp_ms()
            job_ids = await self.pool.zrangebyscore(
                self.queue_name, min=float("-inf"), start=self._queue_read_offset, num=count, max=now
            )
            await self.start_jobs(job_ids)
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        self._collect_finished()
        await self.heart_beat()

    def _collect_finished(self) -> None:
        for job_id, task in list(self.tasks.items()):
            if not task.done():
                continue
            del self.tasks[job_id]
            error = None if task.cancelled() else task.exception()
            if error is not None and self.outages.failed(error, default="redis") is None:
                raise error  # as arq does: an error that is not an outage is a bug worth stopping for

    async def _iterate(self) -> bool:
        """One poll iteration; False when it met an outage (after waiting its backoff)."""
        try:
            await self._poll_iteration()
        except Exception as error:
            await self._wait(error, default="redis")
            return False
        self._failed_rounds = 0
        if self.outages.redis.ongoing:
            self.outages.redis.recovered()
            self._reschedule_crons()
        return True

    async def _wait(self, error: Exception, *, default: Store) -> None:
        if self.outages.failed(error, default=default) is None:
            raise error
        self._failed_rounds += 1
        await asyncio.sleep(backoff(self._failed_rounds))

    def _reschedule_crons(self) -> None:
        """After an outage, crons start again from now: no catch-up run per missed minute."""
        for cron_job in self.cron_jobs:
            cron_job.next_run = None

    async def close(self) -> None:
        """arq's close, except that a Redis still down at shutdown does not make it raise."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(Exception):
            await self.pool.aclose(close_connection_pool=True)
        self._pool = None
