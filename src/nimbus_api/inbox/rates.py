"""An account's 7-day bounce and complaint rates, per send, kept current as bounces and complaints arrive.

The day's permanent refusals (a 5xx at send time, a bounce report failing its recipient) and complaints
are counted on the account's ``account_daily_usage`` row of that UTC day, beside the day's sends. A rate is
``sum(bounces) / sum(sends)`` over the last 7 days (today and the 6 before), in percent; with no sends it
is 0. Both are recomputed in the statement that counts the new bounce or complaint, set-based on at most 7
rows: ``email_accounts.bounce_rate_7d`` and ``complaint_rate_7d`` never go stale for lack of a job.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.kit.db import utc_day

WINDOW_DAYS = 7

_COUNT = {
    "bounces": text(
        """
        INSERT INTO account_daily_usage AS u (account_id, day, sends, new_contacts, bounces, complaints)
        VALUES (:account_id, :day, 0, 0, 1, 0)
        ON CONFLICT (account_id, day) DO UPDATE SET bounces = u.bounces + 1
        """
    ),
    "complaints": text(
        """
        INSERT INTO account_daily_usage AS u (account_id, day, sends, new_contacts, bounces, complaints)
        VALUES (:account_id, :day, 0, 0, 0, 1)
        ON CONFLICT (account_id, day) DO UPDATE SET complaints = u.complaints + 1
        """
    ),
}
_REFRESH = text(
    """
    UPDATE email_accounts a
    SET bounce_rate_7d = w.bounce_rate, complaint_rate_7d = w.complaint_rate
    FROM (
        SELECT CASE WHEN sum(sends) > 0 THEN LEAST(100.0, 100.0 * sum(bounces) / sum(sends)) ELSE 0 END AS bounce_rate,
               CASE WHEN sum(sends) > 0 THEN LEAST(100.0, 100.0 * sum(complaints) / sum(sends)) ELSE 0 END
                   AS complaint_rate
        FROM account_daily_usage
        WHERE account_id = :account_id AND day > CAST(:day AS date) - CAST(:window AS integer)
    ) w
    WHERE a.id = :account_id
    """
)


async def count(
    session: AsyncSession, account_id: uuid.UUID, what: Literal["bounces", "complaints"], now: datetime
) -> None:
    """Count one bounce or complaint for today and refresh the account's two rates."""
    day = utc_day(now)
    await session.execute(_COUNT[what], {"account_id": account_id, "day": day})
    await session.execute(_REFRESH, {"account_id": account_id, "day": day, "window": WINDOW_DAYS})
