"""Telling a store outage from a bug, and riding one out: capped backoff, one log line per outage.

A worker talks to two stores, PostgreSQL and Redis, and either may go away for a second (a restart, a
failover) or an hour. What such an outage raises depends on where it met the client: asyncpg's
``ConnectionDoesNotExistError`` or ``CannotConnectNowError`` ("the database system is starting up"),
SQLAlchemy's ``DBAPIError`` around them with ``connection_invalidated`` set, a bare
``ConnectionRefusedError`` while a pool reconnects, redis-py's ``ConnectionError`` / ``TimeoutError`` /
``BusyLoadingError``. ``outage_of`` names the store for any of them (``None`` for everything else:
a constraint violation or a bug is not waited out, it fails as it always did).

``Outage`` is one process's view of one store: the first failure logs ``store_unavailable`` (a
warning), later ones only count, and the first success after it logs ``store_recovered`` with how long
it lasted and how many operations met it. ``backoff(attempt)`` is the wait before a caller's next try:
0.5 s doubling to 30 s, with jitter so that many workers do not knock on a restarted server in step.
Each caller counts its own attempts (a poll loop its failed rounds, a job its tries): counted per
process, the many operations that fail together in the first second would start everyone at the cap.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import structlog
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_exc

log = structlog.get_logger("nimbus.outage")

Store = Literal["postgres", "redis"]
T = TypeVar("T")

FIRST_DELAY = 0.5
MAX_DELAY = 30.0

_REDIS_OUTAGES = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError)
# SQLSTATE class 08 (connection exception) and 57P01..57P03 (admin/crash shutdown, cannot connect now).
_PG_OUTAGE_STATES = ("08", "57P01", "57P02", "57P03")


def _pg_state(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None)
    return state if isinstance(state, str) else None


def _one(error: BaseException) -> Store | None:
    if isinstance(error, _REDIS_OUTAGES):
        return "redis"
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return "postgres"
        return None  # judged by its cause (the asyncpg error) below
    if isinstance(error, sa_exc.DisconnectionError):
        return "postgres"
    state = _pg_state(error)
    if state is not None and state.startswith(_PG_OUTAGE_STATES):
        return "postgres"
    module = type(error).__module__
    if module.startswith("asyncpg") and type(error).__name__ in (
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "InternalClientError",
    ):
        return "postgres"
    return None


def outage_of(error: BaseException, *, default: Store | None = None) -> Store | None:
    """The store whose outage ``error`` is (or is caused by), else ``None``.

    A bare ``OSError`` (connection refused or reset, a name that does not resolve, a timeout) names
    ``default``: it says the network failed, not which store's client met it, so only a caller that
    knows which store it was talking to may call it an outage."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _one(current)
        if found is not None:
            return found
        if isinstance(current, (ConnectionError, TimeoutError, socket.gaierror)) and default is not None:
            return default
        if isinstance(current, OSError) and current.errno is not None and default is not None:
            return default
        current = current.__cause__ or current.__context__
    return None


def backoff(attempt: int, *, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> float:
    """The wait before try ``attempt + 1`` after ``attempt`` failed ones: ``first`` doubling per attempt up to
    ``cap``, with up to 25% jitter either way."""
    base = min(cap, first * (2 ** min(max(0, attempt - 1), 16)))
    jittered: float = base * random.uniform(0.75, 1.25)  # noqa: S311 (jitter, not a secret)
    return jittered


class Outage:
    """One process's record of one store's availability (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.since: float | None = None
        self.failures = 0
        self.outages = 0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            self.outages += 1
            log.warning("store_unavailable", store=self.store, error_type=type(error).__name__)

    def recovered(self) -> None:
        if self.since is None:
            return
        log.warning(
            "store_recovered",
            store=self.store,
            seconds=round(time.monotonic() - self.since, 1),
            failed_operations=self.failures,
        )
        self.since = None
        self.failures = 0


class Outages:
    """Both stores' records, shared by everything in one process (the worker, its tasks, the sender)."""

    def __init__(self) -> None:
        self.postgres = Outage("postgres")
        self.redis = Outage("redis")

    def of(self, store: Store) -> Outage:
        return self.postgres if store == "postgres" else self.redis

    def failed(self, error: BaseException, *, default: Store | None = None) -> Outage | None:
        """Note ``error`` if it is an outage (the ``Outage`` it belongs to), else return ``None``."""
        store = outage_of(error, default=default)
        if store is None:
            return None
        outage = self.of(store)
        outage.failed(error)
        return outage


async def ride_out(
    operation: Callable[[], Awaitable[T]],
    outage: Outage,
    *,
    deadline: float | None = None,
) -> T:
    """Run ``operation`` until it succeeds, waiting out ``outage.store``'s outages (backoff, one log line
    each); any other error is raised at once, and so is an outage still going at ``deadline``
    (``time.monotonic()``). ``operation`` must be safe to run again after it failed half way: a
    transaction that rolled back, or one that checks whether its earlier try committed."""
    attempt = 0
    while True:
        try:
            result = await operation()
        except Exception as error:
            if outage_of(error, default=outage.store) != outage.store:
                raise
            outage.failed(error)
            attempt += 1
            wait = backoff(attempt)
            if deadline is not None and time.monotonic() + wait > deadline:
                raise
            await asyncio.sleep(wait)
        else:
            outage.recovered()
            return result
