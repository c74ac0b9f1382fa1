"""Who syncs which mailbox: leases in Postgres, claimed with ``SKIP LOCKED``, renewed while held.

A worker holds a set of mailboxes (``mailbox_syncs.lease_owner``/``lease_expires_at``, Postgres's clock).
Every ``lease / 3`` it says it is alive (``sync_workers.expires_at``: now plus its lease period), renews its
leases in one statement (a mailbox it no longer holds, because its lease lapsed and another worker took it,
is dropped) and claims free or expired ones up to its share: ``ceil(mailboxes / live workers)`` (live: an
unexpired ``sync_workers`` row, itself included), capped by its connection limit. A worker above its share
by more than a tenth releases the excess, so a new worker gets work within a renewal period or two, and a
dead worker's mailboxes are free once its leases expire (``sync_lease_seconds``, 45 s by default: well
within two 30 s intervals).

Holding a lease is checked again when a poll stores its messages (``lock_held``): a worker that lost a
mailbox while a poll was running rolls that poll back instead of writing next to the new owner.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_HEARTBEAT = text(
    """
    INSERT INTO sync_workers (owner, seen_at, expires_at) VALUES (:owner, now(), now() + make_interval(secs => :ttl))
    ON CONFLICT (owner) DO UPDATE SET seen_at = now(), expires_at = now() + make_interval(secs => :ttl)
    """
)
_FORGET_WORKERS = text("DELETE FROM sync_workers WHERE expires_at < now() - interval '1 day' OR owner = :owner")
_SHARE = text(
    """
    WITH live AS (SELECT owner FROM sync_workers WHERE expires_at > now())
    SELECT (SELECT count(*) FROM live) AS workers,
           (SELECT count(*) FROM mailbox_syncs s
            WHERE s.lease_owner IS NULL OR s.lease_expires_at < now()
               OR s.lease_owner IN (SELECT owner FROM live)) AS total
    """
)
_CLAIM = text(
    """
    UPDATE mailbox_syncs s
    SET lease_owner = :owner, lease_expires_at = now() + make_interval(secs => :ttl)
    FROM (
        SELECT account_id FROM mailbox_syncs
        WHERE lease_expires_at IS NULL OR lease_expires_at < now()
        ORDER BY next_poll_at
        LIMIT :n
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE s.account_id = c.account_id
    RETURNING s.account_id
    """
)
_RENEW = text(
    """
    UPDATE mailbox_syncs SET lease_expires_at = now() + make_interval(secs => :ttl)
    WHERE lease_owner = :owner AND account_id = ANY(:ids) AND lease_expires_at > now()
    RETURNING account_id
    """
)
_RELEASE = text(
    """
    UPDATE mailbox_syncs SET lease_owner = NULL, lease_expires_at = NULL
    WHERE lease_owner = :owner AND account_id = ANY(:ids)
    """
)
_LOCK_HELD = text(
    """
    SELECT 1 FROM mailbox_syncs
    WHERE account_id = :id AND lease_owner = :owner AND lease_expires_at > now()
    FOR NO KEY UPDATE
    """
)


@dataclass(frozen=True)
class Share:
    total: int
    workers: int
    target: int


async def heartbeat(session: AsyncSession, owner: str, ttl: float) -> None:
    """Say this worker is alive for the next ``ttl`` seconds (``sync_workers``), its lease period: the share
    divides the mailboxes among live workers, and a killed worker stops counting when its leases lapse."""
    await session.execute(_HEARTBEAT, {"owner": owner, "ttl": ttl})


async def leave(session: AsyncSession, owner: str) -> None:
    await session.execute(_FORGET_WORKERS, {"owner": owner})


async def share(session: AsyncSession, owner: str, capacity: int) -> Share:
    """This worker's share. Mailboxes held by an owner that is not a live worker (and whose lease has not
    expired) are nobody's to share and not counted."""
    row = (await session.execute(_SHARE)).one()
    workers = max(int(row.workers), 1)
    target = min(capacity, math.ceil(int(row.total) / workers)) if row.total else 0
    return Share(total=int(row.total), workers=workers, target=target)


async def claim(session: AsyncSession, owner: str, n: int, ttl: float) -> list[uuid.UUID]:
    if n <= 0:
        return []
    rows = await session.execute(_CLAIM, {"owner": owner, "n": n, "ttl": ttl})
    return [row[0] for row in rows]


async def renew(session: AsyncSession, owner: str, ids: list[uuid.UUID], ttl: float) -> set[uuid.UUID]:
    """Renew the leases still held; returns those (a lapsed lease is not renewed: it may have a new owner)."""
    if not ids:
        return set()
    rows = await session.execute(_RENEW, {"owner": owner, "ids": ids, "ttl": ttl})
    return {row[0] for row in rows}


async def release(session: AsyncSession, owner: str, ids: list[uuid.UUID]) -> None:
    if ids:
        await session.execute(_RELEASE, {"owner": owner, "ids": ids})


async def lock_held(session: AsyncSession, owner: str, account_id: uuid.UUID) -> bool:
    """Lock the mailbox's sync row for this transaction if (and only if) ``owner`` still holds it."""
    return (await session.execute(_LOCK_HELD, {"id": account_id, "owner": owner})).first() is not None
