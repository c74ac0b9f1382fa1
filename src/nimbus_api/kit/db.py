"""Declarative base with a stable naming convention, and engine/session factories.

Sessions are created with ``expire_on_commit=False`` and never commit inside services: the request
dependency (``api.deps``) or the task wrapper (``worker``) owns the transaction.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, delete, event, exc, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day budgets and quotas count in (``moment`` must be timezone-aware)."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC).date()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs from operators and use the asyncpg driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


SERVER_SETTINGS = {
    # Statements are prepared (asyncpg caches them per connection), and after five runs PostgreSQL may
    # switch a prepared statement to a generic plan that ignores the parameters' values. For queries
    # whose selectivity depends on them (one workspace, one campaign's pool) that plan was measured 4-6x
    # slower than a custom one (bench/bench_pick.py); planning each run costs well under a millisecond.
    "plan_cache_mode": "force_custom_plan",
}


ARRAY_PARAMETER_TYPES = ("uuid[]", "varchar[]", "text[]", "int[]", "date[]", "timestamptz[]")
"""The array types the bulk statements bind (one parameter per column, ``unnest``). asyncpg has no
built-in codec for arrays: it looks each one up in the catalog (a recursive query costing PostgreSQL
about 10 ms to plan) the first time a connection meets it, one query per statement that brings a new
one. ``_learn_array_types`` teaches a new connection all of them in one such query instead."""

LEARN_ARRAY_TYPES_SQL = "SELECT " + ", ".join(f"${n}::{t}" for n, t in enumerate(ARRAY_PARAMETER_TYPES, 1))


async def _learn_array_types(connection: Any) -> None:
    await connection.prepare(LEARN_ARRAY_TYPES_SQL)


PING_AFTER_IDLE_SECONDS = 1.0
"""A pooled connection idle for longer than this is checked (one round trip) before it is handed out;
one returned more recently was working a moment ago and is handed out as it is."""


async def _ping(connection: Any) -> None:
    await connection.execute("SELECT 1")  # simple protocol: one round trip


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine whose pool checks connections that sat idle before handing them out.

    SQLAlchemy's ``pool_pre_ping`` checks every checkout, and for asyncpg a check is three round trips
    (BEGIN, a query, ROLLBACK): a sender that takes a connection for each chunk of messages paid as
    many round trips for the check as for its work. Here a connection idle for less than
    ``PING_AFTER_IDLE_SECONDS`` is not checked and an older one costs one round trip; one that fails the
    check (PostgreSQL restarted, the socket closed) is replaced before anyone sees it. A connection that
    breaks within that second fails its statement, and SQLAlchemy then discards it (and the pool's
    older connections) as it does any connection it finds disconnected."""
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("server_settings", {}).update(SERVER_SETTINGS)
    # hide_parameters: a database error's message (logged, maybe raised to a 500) never carries the values.
    engine = create_async_engine(async_url(url), connect_args=connect_args, hide_parameters=True, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def learn_array_types(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(_learn_array_types)

    @event.listens_for(engine.sync_engine, "checkin")
    def note_idle(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def check_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.run_async(_ping)
        except Exception as error:  # any failure: the connection is replaced
            raise exc.DisconnectionError("a pooled connection failed its check") from error

    return engine


async def open_connections(engine: AsyncEngine, count: int) -> None:
    """Open ``count`` pooled connections at once (a worker that starts does this before it takes work,
    so its first messages do not pay for connection set-up). Those already open go back to the pool
    when a later one fails or the start is cancelled, rather than being left checked out."""
    async with contextlib.AsyncExitStack() as opened:
        for _ in range(count):
            await opened.enter_async_context(engine.connect())


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def purge_before(
    sessionmaker: async_sessionmaker[AsyncSession], model: Any, cutoff: datetime, *, batch: int
) -> int:
    """Delete the rows of ``model`` (an ``id`` and a ``created_at``) created before ``cutoff``, ``batch`` at a
    time, each batch its own short transaction: a backlog never holds one long lock on the table nor one
    huge WAL record. Idempotent (a second run finds nothing older). Returns how many went."""
    purged = 0
    while True:
        async with sessionmaker() as session, session.begin():
            ids = select(model.id).where(model.created_at < cutoff).limit(batch).scalar_subquery()
            result = await session.execute(delete(model).where(model.id.in_(ids)))
        count: int = getattr(result, "rowcount", 0) or 0
        purged += count
        if count < batch:
            return purged
