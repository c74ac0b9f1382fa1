"""Daily snapshots of inbox health (``account_health_daily``), for the history charts.

``snapshot`` copies the inboxes' current scores into the row of the UTC day they were computed on, one
set-based upsert per batch, run in the transaction of the batch's recompute. A row that would not change
(same scores and band) is left alone, so a quiet fleet writes nothing; the last recompute of a day is what
that day keeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.models import AccountHealthDaily

_UPSERT = text(
    """
    INSERT INTO account_health_daily AS d
        (account_id, day, overall_score, reputation_score, band, components, computed_at)
    SELECT a.id, CAST(a.health_computed_at AT TIME ZONE 'UTC' AS date), a.overall_score, a.reputation_score,
           a.health_band, a.health_components, a.health_computed_at
    FROM email_accounts a
    WHERE a.id = ANY(CAST(:ids AS uuid[])) AND a.health_computed_at IS NOT NULL
    ON CONFLICT (account_id, day) DO UPDATE
    SET overall_score = excluded.overall_score, reputation_score = excluded.reputation_score,
        band = excluded.band, components = excluded.components, computed_at = excluded.computed_at
    WHERE (d.overall_score, d.reputation_score, d.band)
          IS DISTINCT FROM (excluded.overall_score, excluded.reputation_score, excluded.band)
    """
)


async def snapshot(session: AsyncSession, account_ids: Sequence[uuid.UUID]) -> int:
    """Upsert today's (the computation day's) snapshot of these inboxes; returns the rows written."""
    if not account_ids:
        return 0
    result = await session.execute(_UPSERT, {"ids": list(account_ids)})
    written: int = getattr(result, "rowcount", 0) or 0
    return written


async def history(session: AsyncSession, account_id: uuid.UUID, since: date) -> list[AccountHealthDaily]:
    """The inbox's snapshots from ``since`` on, oldest first."""
    rows = await session.scalars(
        select(AccountHealthDaily)
        .where(AccountHealthDaily.account_id == account_id, AccountHealthDaily.day >= since)
        .order_by(AccountHealthDaily.day)
    )
    return list(rows)
