"""The webhook dispatcher: one long-lived loop per worker process, PostgreSQL rows as the only truth.

A round, in one transaction: record the attempts that finished since the last round, fan new events
out into deliveries, claim due deliveries for the free slots (``claims``), open the signing secrets
it has not seen (audited), read the bodies; commit; then start one request per claim. Nothing about a
delivery lives only in memory or in Redis: a worker killed at any point leaves leased rows whose
leases lapse, and any worker sends them again (at least once, the same ``webhook-id``).

What starts a round: a ``NOTIFY nimbus_webhooks`` (sent by the ``events`` insert trigger, so only at
commit of the business change), a finished request, or the poll timer (``NIMBUS_WEBHOOK_POLL_SECONDS``)
that picks up retries as they fall due. The listener is a dedicated asyncpg connection, reconnected
with backoff; while it is down the poll timer alone keeps delivering.

A store outage met by a round rolls it back and keeps its finished results for the next one, which
waits ``outage.backoff``; requests in flight carry on. On stop the loop claims nothing more, waits for
the requests in flight (up to the timeout) and records them.

Time comes from ``clock`` and jitter from ``rng``, so tests drive the schedule without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.kit import metrics
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.outage import Outages, backoff, outage_of
from nimbus_api.webhooks import claims
from nimbus_api.webhooks.claims import Claim, Policy, Result
from nimbus_api.webhooks.signing import SecretBook, Signer
from nimbus_api.webhooks.transport import WebhookTransport

log = structlog.get_logger(__name__)
CHANNEL = "nimbus_webhooks"


@dataclass
class RoundReport:
    recorded: int = 0
    events: int = 0
    deliveries: int = 0
    claimed: int = 0


@dataclass
class _Work:
    claim: Claim
    body: bytes
    signer: Signer


@dataclass
class DispatcherStats:
    rounds: int = 0
    attempts: int = 0
    succeeded: int = 0
    failed_rounds: int = 0
    by_class: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        transport: WebhookTransport,
        book: SecretBook,
        policy: Policy,
        *,
        concurrency: int,
        poll_seconds: float,
        listen_dsn: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        outages: Outages | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.transport = transport
        self.book = book
        self.policy = policy
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.listen_dsn = listen_dsn
        self.clock = clock
        self.rng = rng
        self.outages = outages or Outages()
        self.stats = DispatcherStats()
        self._wake = asyncio.Event()
        self._done: list[Result] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._loop(), name="webhook-dispatcher"))
        if self.listen_dsn:
            self._tasks.append(asyncio.create_task(self._listen(self.listen_dsn), name="webhook-listener"))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.transport.timeout + 1)
        for task in list(self._in_flight):
            task.cancel()
        try:
            await self.run_round(claim=False)
        except Exception as exc:  # the leases lapse and another worker sends them again
            log.warning("webhook_dispatcher_final_record_failed", error=type(exc).__name__)

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # --- the loop -------------------------------------------------------------------------
    async def _loop(self) -> None:
        failed = 0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()
            try:
                report = await self.run_round()
            except Exception as exc:
                store = outage_of(exc)
                self.stats.failed_rounds += 1
                if store is None:
                    log.exception("webhook_round_failed")
                else:
                    self.outages.failed(exc)
                failed += 1
                await asyncio.sleep(backoff(failed))
                continue
            if failed:
                self.outages.of("postgres").recovered()
            failed = 0
            if report.events >= 1000 or (report.claimed and self.in_flight < self.concurrency):
                self._wake.set()  # more may be waiting: go again without sleeping

    async def _listen(self, dsn: str) -> None:
        failed = 0
        while not self._stopping:
            try:
                connection = await asyncpg.connect(dsn)
            except Exception:
                failed += 1
                await asyncio.sleep(backoff(failed))
                continue
            failed = 0
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await connection.add_listener(CHANNEL, lambda *_a: self._wake.set())
                self._wake.set()  # anything committed while we were not listening
                await lost.wait()
            except Exception:
                log.warning("webhook_listener_lost")
            finally:
                if not connection.is_closed():
                    await connection.close(timeout=2)
            await asyncio.sleep(backoff(1))

    # --- one round ------------------------------------------------------------------------
    async def run_round(self, *, claim: bool = True) -> RoundReport:
        """Record what finished, fan out, claim and start requests. Safe to call from a test."""
        done, self._done = self._done, []
        report = RoundReport()
        now = self.clock()
        work: list[_Work] = []
        try:
            async with self.sessionmaker() as session:
                verdicts = await claims.record(session, done, self.policy, rng=self.rng)
                report.recorded = len(done)
                if claim and not self._stopping:
                    report.events, report.deliveries = await claims.fan_out(session, now)
                    taken = await claims.claim(
                        session,
                        now=now,
                        slots=self.concurrency - self.in_flight,
                        policy=self.policy,
                        lease_id=uuid.uuid4(),
                    )
                    report.claimed = len(taken)
                    work = await self._prepare(session, taken, now)
                await session.commit()
        except BaseException:
            self._done = done + self._done
            self.book.forget_unconfirmed()
            raise
        self.book.confirm()
        for verdict in verdicts:  # committed: counted once (a round rolled back records them again)
            metrics.count_webhook(verdict.status if verdict.status != "pending" else "retrying")
        self.stats.rounds += 1
        for item in work:
            task = asyncio.create_task(self._attempt(item))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return report

    async def _prepare(self, session: AsyncSession, taken: list[Claim], now: datetime) -> list[_Work]:
        if not taken:
            return []
        signers = await self.book.signers(session, sorted({c.endpoint_id for c in taken}), now)
        payloads = await claims.bodies(session, [c.event_id for c in taken])
        work = []
        for c in taken:
            signer, body = signers.get(c.endpoint_id), payloads.get(c.event_id)
            if signer is None or body is None:  # deleted meanwhile: the lease lapses, the cascade ends it
                continue
            work.append(_Work(c, body, signer))
        return work

    async def _attempt(self, item: _Work) -> None:
        attempted_at = self.clock()
        headers = item.signer.headers(item.claim.webhook_id, attempted_at, item.body)
        outcome = await self.transport.post(item.claim.url, headers, item.body)
        self.stats.attempts += 1
        if outcome.ok:
            self.stats.succeeded += 1
        else:
            key = outcome.error_class or "?"
            self.stats.by_class[key] = self.stats.by_class.get(key, 0) + 1
        self._done.append(Result(item.claim, outcome, attempted_at, self.clock()))
        self._wake.set()

    async def drain(self, timeout: float | None = None) -> RoundReport:
        """Wait for the requests in flight, then record them (tests: one deterministic step)."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)
        return await self.run_round(claim=False)


def listen_dsn(database_url: str) -> str:
    """The plain libpq URL asyncpg wants, from our SQLAlchemy one."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def describe(stats: DispatcherStats) -> dict[str, Any]:
    return {"rounds": stats.rounds, "attempts": stats.attempts, "succeeded": stats.succeeded, **stats.by_class}
