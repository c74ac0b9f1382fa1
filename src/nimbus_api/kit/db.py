"""Declarative base with a stable naming convention, and engine/session factories.

Sessions are created with ``expire_on_commit=False`` and never commit inside services: the request
dependency (``api.deps``) or the task wrapper (``worker``) owns the transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData
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


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("server_settings", {}).update(SERVER_SETTINGS)
    return create_async_engine(async_url(url), pool_pre_ping=True, connect_args=connect_args, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
