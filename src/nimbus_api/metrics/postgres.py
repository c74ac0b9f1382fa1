"""Gauges computed from PostgreSQL when scraped: right whichever process, on whichever box, answers.

Queue depth and sync lag are facts of the database, not of a process: a worker that dies does not take
its share with it, and two boxes scraped separately give the same answer (so in a dashboard take ``max``
over the targets, never ``sum``; or turn these off, ``NIMBUS_METRICS_POSTGRES=false``, on every target
but one). Each query reads only what it counts:

* ``nimbus_queue_messages{state}``: messages ``queued``, ``deferred`` (both on the partial index of the
  sender's work) and ``leased`` (on the partial index of leases): the backlog, not the history.
* ``nimbus_imap_sync_lag_seconds``: per mailbox ``now - last_success_at`` (a mailbox never synced counts
  from when its sync was set up), over every ``mailbox_syncs`` row: the largest, and the 0.5 / 0.9 / 0.99
  quantiles (``nimbus_imap_sync_lag_quantile_seconds{quantile}``); ``nimbus_imap_mailboxes{status}``
  counts them by status (pending, ok, failing).
* ``nimbus_metrics_postgres_up``: 1 when the queries answered (within ``STATEMENT_TIMEOUT_MS``), else 0
  and the other gauges are left out of that scrape rather than shown as zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = structlog.get_logger(__name__)

QUEUE_STATES = ("queued", "deferred", "leased")
SYNC_STATUSES = ("pending", "ok", "failing")
QUANTILES = (0.5, 0.9, 0.99)
STATEMENT_TIMEOUT_MS = 5000

_QUEUE_SQL = text(
    """
SELECT count(*) FILTER (WHERE state = 'queued') AS queued, count(*) FILTER (WHERE state = 'deferred') AS deferred,
       (SELECT count(*) FROM messages WHERE state = 'leased') AS leased
FROM messages WHERE state IN ('queued', 'deferred')
"""
)
"""One row: the two states of ``ix_messages_work`` counted in one pass (no grouping), the leases on
``ix_messages_leased``."""
_LAG_SQL = text(
    """
SELECT count(*) AS n, max(lag) AS worst,
       percentile_cont(CAST(:quantiles AS float8[])) WITHIN GROUP (ORDER BY lag) AS quantiles
FROM (SELECT GREATEST(extract(epoch FROM now() - COALESCE(last_success_at, created_at)), 0) AS lag
      FROM mailbox_syncs) AS s
"""
)
_STATUS_SQL = text("SELECT status, count(*) AS n FROM mailbox_syncs GROUP BY status")


@dataclass
class Snapshot:
    """What one scrape read (``up`` False: the database did not answer)."""

    up: bool = False
    queue: dict[str, int] = field(default_factory=dict)
    mailboxes: dict[str, int] = field(default_factory=dict)
    lag_max: float | None = None
    lag_quantiles: dict[float, float] = field(default_factory=dict)


async def read(sessionmaker: async_sessionmaker[AsyncSession]) -> Snapshot:
    """The gauges' values, in one read-only transaction bounded by a statement timeout."""
    snap = Snapshot()
    try:
        async with sessionmaker() as session, session.begin():
            await session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            queue = (await session.execute(_QUEUE_SQL)).one()
            snap.queue = {state: int(getattr(queue, state)) for state in QUEUE_STATES}
            snap.mailboxes = dict.fromkeys(SYNC_STATUSES, 0) | {
                r.status: int(r.n) for r in await session.execute(_STATUS_SQL)
            }
            lag = (await session.execute(_LAG_SQL, {"quantiles": list(QUANTILES)})).one()
            if lag.n:
                snap.lag_max = float(lag.worst)
                snap.lag_quantiles = dict(zip(QUANTILES, (float(v) for v in lag.quantiles), strict=True))
    except Exception as exc:  # a scrape must answer: the figures are left out, up says why
        log.warning("metrics_postgres_unavailable", error=type(exc).__name__)
        return Snapshot()
    snap.up = True
    return snap


class _SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterable[Metric]:
        snap = self.snap
        up = GaugeMetricFamily("nimbus_metrics_postgres_up", "1 when the scrape-time PostgreSQL gauges were read.")
        up.add_metric([], 1.0 if snap.up else 0.0)
        yield up
        if not snap.up:
            return
        queue = GaugeMetricFamily(
            "nimbus_queue_messages", "Messages waiting or in flight, by state (from PostgreSQL).", labels=["state"]
        )
        for state, n in snap.queue.items():
            queue.add_metric([state], n)
        yield queue
        boxes = GaugeMetricFamily(
            "nimbus_imap_mailboxes", "Mailboxes with an IMAP sync, by sync status (from PostgreSQL).", labels=["status"]
        )
        for status, n in snap.mailboxes.items():
            boxes.add_metric([status], n)
        yield boxes
        if snap.lag_max is None:
            return
        worst = GaugeMetricFamily(
            "nimbus_imap_sync_lag_seconds", "The largest IMAP sync lag over all mailboxes: now - last success."
        )
        worst.add_metric([], snap.lag_max)
        yield worst
        quantiles = GaugeMetricFamily(
            "nimbus_imap_sync_lag_quantile_seconds",
            "Quantiles of the IMAP sync lag over the mailboxes (now - last success).",
            labels=["quantile"],
        )
        for q, value in snap.lag_quantiles.items():
            quantiles.add_metric([str(q)], value)
        yield quantiles


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry()
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
