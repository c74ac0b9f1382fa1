"""Asking for an inbox's health recompute right after something that moves it (a bounce, a complaint, a
login failure, a listing), from the transaction that records that thing.

Why a mark in PostgreSQL rather than a job enqueued after the commit: the paths that move health (the IMAP
sync storing a bounce report, the sender recording a refused login, the domain checks) run inside their own
units of work with no queue at hand, and a mark written by the same transaction is what an after-commit
enqueue promises and more: it exists only if the transaction commits (a rollback drops it with the bounce),
and it cannot be lost between the commit and the enqueue, or by a wiped Redis. ``health.tasks.
recompute_requested`` (a worker cron every ``NIMBUS_HEALTH_REQUEST_SECONDS``) recomputes every marked inbox in
one set-based statement; the recompute clears a mark only if no newer one arrived meanwhile.

The mark is an update of the inbox's row, which these paths already update in the same transaction (the
7-day rates, the pause): it takes no lock they do not already hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_MARK = text("UPDATE email_accounts SET health_requested_at = clock_timestamp() WHERE id = ANY(CAST(:ids AS uuid[]))")
_MARK_DOMAIN = text("UPDATE email_accounts SET health_requested_at = clock_timestamp() WHERE domain_id = :domain_id")


async def request(session: AsyncSession, account_ids: Sequence[uuid.UUID]) -> None:
    """These inboxes' health is recomputed soon after the caller's transaction commits (not if it rolls back)."""
    if account_ids:
        await session.execute(_MARK, {"ids": list(account_ids)})


async def request_for_domain(session: AsyncSession, domain_id: uuid.UUID) -> None:
    """Every inbox of the domain (its DNS or blocklist verdict changed): recomputed soon after the commit."""
    await session.execute(_MARK_DOMAIN, {"domain_id": domain_id})
