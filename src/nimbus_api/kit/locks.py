"""PostgreSQL advisory locks, keyed by a namespace and a row id.

Two kinds, for two needs:

* ``xact_lock``: held until the caller's transaction ends (commit or rollback), so a check and the write
  it allows are one step for every transaction that takes the same lock (the email-account limit:
  count, then insert, then commit);
* ``session_lock``: held on a connection of its own across many transactions, for work that commits in
  batches (a data-key rotation), released at the end, or by the server when the connection dies, so a
  crashed holder never leaves it taken. It does not wait: it says whether it got the lock.

Unlike a Redis lock, both live where the data they protect lives: no expiry to guess, nothing to clean
up after a crash.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

_KEY = "hashtextextended(:namespace || ':' || :id, 0)"


async def xact_lock(session: AsyncSession, namespace: str, row_id: uuid.UUID) -> None:
    """Wait for the lock of ``(namespace, row_id)``; it is released when the session's transaction ends."""
    await session.execute(text(f"SELECT pg_advisory_xact_lock({_KEY})"), {"namespace": namespace, "id": str(row_id)})


@asynccontextmanager
async def session_lock(engine: AsyncEngine, namespace: str, row_id: uuid.UUID) -> AsyncIterator[bool]:
    """Try the lock of ``(namespace, row_id)`` on a connection held for the block; yields whether it was
    got (False: someone else holds it, and the block should leave the work to them)."""
    params = {"namespace": namespace, "id": str(row_id)}
    async with engine.connect() as conn:
        got = bool(await conn.scalar(text(f"SELECT pg_try_advisory_lock({_KEY})"), params))
        await conn.commit()
        try:
            yield got
        finally:
            if got:
                try:
                    await conn.execute(text(f"SELECT pg_advisory_unlock({_KEY})"), params)
                    await conn.commit()
                except BaseException:
                    # The connection must not go back to the pool still holding the lock.
                    await conn.invalidate()
                    raise
