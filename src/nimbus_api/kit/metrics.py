"""Every Prometheus metric the processes record, in one place, and how a scrape collects them.

Two kinds of figures, chosen by where the truth is:

* **Recorded in the process** (counters, histograms, the SMTP pool gauge): what happens inside one API or
  worker process and is nowhere else (a send's outcome once committed, an SMTP transaction's duration, a
  webhook attempt's verdict, a pool's connections). With several processes on a box they are written
  through ``prometheus_client``'s multiprocess mode: every process that has ``PROMETHEUS_MULTIPROC_DIR``
  in its environment (set before it starts: the value class is chosen when ``prometheus_client`` is
  imported) writes its values to memory-mapped files of its own pid in that directory, and a scrape of
  any process on the box (``/metrics`` of the API, or ``nimbus metrics``) sums them. Without the variable,
  each process counts only its own (fine for a single process, wrong for several).
* **Read from PostgreSQL at scrape time** (``nimbus_api.metrics.postgres``): queue depth by state, IMAP
  sync lag, mailboxes by sync status. Every process sees the same rows, so these are right whichever
  process is scraped, on whichever box.

Labels are bounded: ``outcome`` (the send outcome table, or a webhook verdict) and ``state``; never an
account, a workspace, an address or a host.

Dead processes: a counter's or histogram's file stays after its process exits (what it counted is still
counted: totals never go back), but the pool gauge is ``livesum`` (live processes only), so the files of a
dead pid must go: every process calls ``process_exit`` when it stops, and every scrape first calls
``reap_dead_processes`` (a process killed without a chance to clean up is found by its pid no longer
existing). The directory is per box; empty it when the box (or the deployment) starts, before any process.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_RECOMPUTE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)

SENDS = Counter(
    "nimbus_sends",
    "Campaign sends by outcome, counted once the outcome is committed (sending.outcomes: sent, transient, "
    "hard_bounce, failed, unknown, credential, relay_denied; plus suppressed and rendering_failed).",
    ["outcome"],
)
SEND_SECONDS = Histogram(
    "nimbus_send_seconds",
    "One SMTP transaction on a ready connection: MAIL FROM to the reply after the final dot (or the refusal).",
    buckets=_LATENCY_BUCKETS,
)
DISPATCH_SECONDS = Histogram(
    "nimbus_dispatch_seconds",
    "One dispatch batch of one campaign (due enrollments to queued messages, in one transaction); batches "
    "that found nothing due are not observed.",
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "nimbus_webhook_deliveries",
    "Webhook delivery attempts by verdict once recorded: succeeded, retrying (failed, another attempt is "
    "scheduled) or failed (no attempt left, or the endpoint refused for good).",
    ["outcome"],
)
SMTP_POOL_CONNECTIONS = Gauge(
    "nimbus_smtp_pool_connections",
    "SMTP connections held by the worker processes' pools, by state (leased, idle, closing); refreshed at "
    "each pool sweep (at most 5 s apart). Summed over the live processes of the box.",
    ["state"],
    multiprocess_mode="livesum",
)
HEALTH_RECOMPUTE_SECONDS = Histogram(
    "nimbus_health_recompute_seconds",
    "One recompute of inbox health scores (a batch of inboxes, or one inbox after an event).",
    buckets=_RECOMPUTE_BUCKETS,
)
PROVIDER_QUOTA_READS = Counter(
    "nimbus_provider_quota_reads",
    "Reads of a provider's send quota (Amazon SES GetSendQuota) by result: ok or error.",
    ["outcome"],
)

POOL_STATES = ("leased", "idle", "closing")


# --- hooks (each a one-liner at its call site) ---------------------------------------------------------


def count_send(outcome: str) -> None:
    SENDS.labels(outcome).inc()


def count_webhook(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


@contextlib.contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the block's wall time, also when it raises (a refused send took its time too)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def pool_connections(leased: int, idle: int, closing: int) -> None:
    for state, value in zip(POOL_STATES, (leased, idle, closing), strict=True):
        SMTP_POOL_CONNECTIONS.labels(state).set(value)


# --- multiprocess bookkeeping and collection -----------------------------------------------------------


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode when this process runs in it (the variable was set at import)."""
    path = os.environ.get(MULTIPROC_ENV)
    return path or None


_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def reap_dead_processes(path: str | None = None) -> list[int]:
    """``mark_process_dead`` for every pid with live-gauge files that no longer runs; returns those pids."""
    path = path or multiprocess_dir()
    if path is None:
        return []
    dead = set()
    for name in os.listdir(path) if os.path.isdir(path) else []:
        found = _LIVE_FILE.match(name)
        if found and not _alive(int(found[1])):
            dead.add(int(found[1]))
    for pid in dead:
        _multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return sorted(dead)


def process_exit() -> None:
    """A process stops: its live gauges leave the sums (its counters stay counted)."""
    path = multiprocess_dir()
    if path is not None:
        _multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


def check_multiprocess_dir() -> str | None:
    """At process start: the multiprocess directory must exist (``prometheus_client`` writes there on
    the first value); stale live gauges of dead pids are dropped. Raises ``RuntimeError`` when it is
    set but missing, so a misconfigured box fails at start, not at the first send."""
    path = multiprocess_dir()
    if path is None:
        return None
    if not os.path.isdir(path):
        raise RuntimeError(f"{MULTIPROC_ENV}={path} is not a directory: create it (empty) before starting")
    reap_dead_processes(path)
    return path


def render_process_metrics(path: str | None = None) -> bytes:
    """The recorded metrics in the text format: summed over the box's processes in multiprocess mode
    (``path``, else ``PROMETHEUS_MULTIPROC_DIR``), else this process's own registry."""
    path = path or multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    reap_dead_processes(path)
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def files_of(path: str) -> list[str]:
    """The multiprocess files in ``path`` (for tests and operators: which pids wrote)."""
    return sorted(os.path.basename(f) for f in glob.glob(os.path.join(path, "*.db")))
