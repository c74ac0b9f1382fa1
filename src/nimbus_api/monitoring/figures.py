"""One inbox's send figures over the last 24 hours and 7 days, exact, without counting every row.

A window ``[since, now)`` is three parts: its head, from ``since`` to the next full UTC hour; the full
hours after it up to the ``cutoff`` (the start of the hour that began at least ``SETTLE`` ago); and the
tail from the cutoff to now. Head and tail are counted from the rows (``messages.sent_at`` and
``send_attempts.started_at``, by their per-inbox indexes: at most a couple of hours of rows each), the
full hours are read from ``monitoring_hours``. For an inbox sending 10,000 messages a day that is a
few thousand rows instead of 80,000 for both windows.

The rollup (``ROLLUP``) counts the hours from where ``monitoring_rollups.through`` left off up to the
cutoff, at the first read after the cutoff moves (once an hour per inbox read), and prunes hours older
than the 7-day window. An hour is rolled up only once it is ``SETTLE`` old: a send is recorded at most
a send slice (60 s) after it started (``sending.tasks``), so no row lands in an hour after that. Two
readers rolling up at once insert the same rows; ``ON CONFLICT DO NOTHING`` keeps one.

What the rollup does not follow: rows deleted after their hour was rolled up (a deleted campaign's
messages) are still counted until the hour leaves the window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.models import MonitoringRollup

SETTLE = timedelta(minutes=15)
HOUR = timedelta(hours=1)

CONNECTION_CODES = frozenset(
    {
        "smtp.connection_refused",
        "smtp.host_unresolvable",
        "smtp.host_not_allowed",
        "smtp.tls_handshake_failed",
        "smtp.tls_certificate_invalid",
        "smtp.starttls_required",
        "smtp.starttls_unsupported",
        "smtp.auth_failed",
        "smtp.auth_unsupported",
        "smtp.plaintext_auth_refused",
        "smtp.timeout",
        "smtp.connection_lost",
    }
)
"""Failures of the session itself (connect, TLS, login, or the connection breaking), as opposed to the
server refusing one message or recipient. A timeout or a lost connection after the final dot (outcome
``unknown``: the message may have been taken) is not counted as one."""

ROLLUP = text(
    """
    WITH counted AS (
        SELECT date_trunc('hour', sent_at, 'UTC') AS hour, 'accepted' AS outcome, '' AS error_code, count(*) AS n
        FROM messages
        WHERE account_id = :account_id AND sent_at >= :start AND sent_at < :cutoff
        GROUP BY 1
        UNION ALL
        SELECT date_trunc('hour', started_at, 'UTC'), outcome, coalesce(error_code, ''), count(*)
        FROM send_attempts
        WHERE account_id = :account_id AND started_at >= :start AND started_at < :cutoff
        GROUP BY 1, 2, 3
    ), stored AS (
        INSERT INTO monitoring_hours (account_id, hour, outcome, error_code, n)
        SELECT :account_id, hour, outcome, error_code, n FROM counted ORDER BY hour, outcome, error_code
        ON CONFLICT DO NOTHING
    ), pruned AS (
        DELETE FROM monitoring_hours WHERE account_id = :account_id AND hour < :keep_from
    )
    INSERT INTO monitoring_rollups (account_id, through) VALUES (:account_id, :cutoff)
    ON CONFLICT (account_id) DO UPDATE SET through = GREATEST(monitoring_rollups.through, EXCLUDED.through)
    """
)

# Each part says which windows it counts for: heads (one window each), the tail and the full hours (both).
_FIGURES = text(
    """
    SELECT outcome, error_code, sum(day)::bigint AS day, sum(week)::bigint AS week FROM (
        SELECT 'accepted' AS outcome, '' AS error_code, 0 AS day, count(*) AS week
        FROM messages WHERE account_id = :account_id AND sent_at >= :since_7d AND sent_at < :week_head_end
        UNION ALL
        SELECT 'accepted', '', count(*), 0
        FROM messages WHERE account_id = :account_id AND sent_at >= :since_24h AND sent_at < :day_head_end
        UNION ALL
        SELECT 'accepted', '', count(*), count(*)
        FROM messages WHERE account_id = :account_id AND sent_at >= :cutoff
        UNION ALL
        SELECT outcome, coalesce(error_code, ''), 0, count(*)
        FROM send_attempts
        WHERE account_id = :account_id AND started_at >= :since_7d AND started_at < :week_head_end
        GROUP BY 1, 2
        UNION ALL
        SELECT outcome, coalesce(error_code, ''), count(*), 0
        FROM send_attempts
        WHERE account_id = :account_id AND started_at >= :since_24h AND started_at < :day_head_end
        GROUP BY 1, 2
        UNION ALL
        SELECT outcome, coalesce(error_code, ''), count(*), count(*)
        FROM send_attempts WHERE account_id = :account_id AND started_at >= :cutoff
        GROUP BY 1, 2
        UNION ALL
        SELECT outcome, error_code, sum(n) FILTER (WHERE hour >= :day_head_end), sum(n)
        FROM monitoring_hours
        WHERE account_id = :account_id AND hour >= :week_head_end AND hour < :cutoff
        GROUP BY 1, 2
    ) parts
    GROUP BY 1, 2
    """
)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


@dataclass(frozen=True)
class Bounds:
    now: datetime
    since_24h: datetime
    since_7d: datetime
    cutoff: datetime
    day_head_end: datetime
    week_head_end: datetime

    @classmethod
    def at(cls, now: datetime) -> Bounds:
        since_24h, since_7d = now - timedelta(hours=24), now - timedelta(days=7)
        cutoff = floor_hour(now - SETTLE)
        return cls(now, since_24h, since_7d, cutoff, min(ceil_hour(since_24h), cutoff), ceil_hour(since_7d))


@dataclass
class Counts:
    accepted: int = 0
    not_accepted: dict[str, int] = field(default_factory=dict)
    connection_failures: dict[str, int] = field(default_factory=dict)


async def roll_up(session: AsyncSession, account_id: uuid.UUID, bounds: Bounds) -> bool:
    """Count the complete hours the rollup lacks (none most of the time). True when it rolled up."""
    through = await session.scalar(select(MonitoringRollup.through).where(MonitoringRollup.account_id == account_id))
    if through is not None and through >= bounds.cutoff:
        return False
    start = bounds.week_head_end if through is None else max(through, bounds.week_head_end)
    await session.execute(
        ROLLUP,
        {"account_id": account_id, "start": start, "cutoff": bounds.cutoff, "keep_from": bounds.week_head_end},
    )
    return True


async def send_counts(session: AsyncSession, account_id: uuid.UUID, bounds: Bounds) -> dict[str, Counts]:
    """Per window (``24h``, ``7d``): accepted messages, other attempts by outcome, connection failures."""
    await roll_up(session, account_id, bounds)
    params = {
        "account_id": account_id,
        "since_24h": bounds.since_24h,
        "since_7d": bounds.since_7d,
        "cutoff": bounds.cutoff,
        "day_head_end": bounds.day_head_end,
        "week_head_end": bounds.week_head_end,
    }
    out = {"24h": Counts(), "7d": Counts()}
    for outcome, error_code, day, week in (await session.execute(_FIGURES, params)).all():
        for name, n in (("24h", day or 0), ("7d", week or 0)):
            counts = out[name]
            if outcome == "accepted":
                counts.accepted += n
                continue
            if not n:
                continue
            counts.not_accepted[outcome] = counts.not_accepted.get(outcome, 0) + n
            if error_code in CONNECTION_CODES and outcome != "unknown":
                counts.connection_failures[error_code] = counts.connection_failures.get(error_code, 0) + n
    return out
