"""Rotation: pick one eligible inbox of a campaign's pool and reserve its budget, in one statement.

Eligible means: active and not disabled; ``overall_score >= min_health_score``; ``current_stage`` at least
3 for cold campaigns, 2 for nurture; not in cooldown; the campaign's type allowed on the inbox; its
domain not paused; under ``daily_send_limit`` today (UTC) and, for step 1, under
``daily_new_contacts_limit``; past ``min_send_interval_seconds`` since its last pick. Among eligible
inboxes the least recently used goes first.

The pick locks the inbox row (``FOR UPDATE ... SKIP LOCKED``), increments today's usage row and stamps
``last_sent_at`` in the same statement (at least a microsecond past its previous value, so several
picks in one transaction still rotate); the lock is held until the caller's transaction ends, so
concurrent dispatchers never pick the same inbox at once and never spend a budget twice. A later
statement in the same transaction sees the increment, so one transaction may pick many times.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.campaigns.eligibility import MIN_STAGE
from nimbus_api.kit.db import utc_day

PICK_SQL = text(
    """
WITH candidate AS (
    SELECT a.id, a.daily_send_limit, a.daily_new_contacts_limit
    FROM campaign_accounts ca
    JOIN email_accounts a ON a.id = ca.account_id
    JOIN domains d ON d.id = a.domain_id
    LEFT JOIN account_daily_usage u ON u.account_id = a.id AND u.day = :day
    WHERE ca.campaign_id = :campaign_id
      AND (CAST(:only_account AS uuid) IS NULL OR a.id = CAST(:only_account AS uuid))
      AND a.is_active AND a.disabled_at IS NULL
      AND a.overall_score >= :min_health
      AND a.current_stage >= :min_stage
      AND (a.cooldown_until IS NULL OR a.cooldown_until <= :now)
      AND CAST(:campaign_type AS varchar) = ANY(a.campaign_types)
      AND NOT d.is_paused
      AND COALESCE(u.sends, 0) < a.daily_send_limit
      AND (NOT :first_step OR a.daily_new_contacts_limit IS NULL
           OR COALESCE(u.new_contacts, 0) < a.daily_new_contacts_limit)
      AND (a.min_send_interval_seconds = 0 OR a.last_sent_at IS NULL
           OR a.last_sent_at <= CAST(:now AS timestamptz) - make_interval(secs => a.min_send_interval_seconds))
    ORDER BY a.last_sent_at ASC NULLS FIRST, a.id
    LIMIT 1
    FOR UPDATE OF a SKIP LOCKED
), reserved AS (
    INSERT INTO account_daily_usage AS u (account_id, day, sends, new_contacts)
    SELECT id, :day, 1, CASE WHEN :first_step THEN 1 ELSE 0 END FROM candidate
    ON CONFLICT (account_id, day) DO UPDATE
        SET sends = u.sends + 1, new_contacts = u.new_contacts + EXCLUDED.new_contacts
        -- Checked again on the latest committed row: the candidate's read of usage may predate a
        -- concurrent reservation that committed while this statement waited for the inbox's lock.
        WHERE u.sends < (SELECT daily_send_limit FROM candidate)
          AND (NOT :first_step OR (SELECT daily_new_contacts_limit FROM candidate) IS NULL
               OR u.new_contacts < (SELECT daily_new_contacts_limit FROM candidate))
    RETURNING account_id
)
UPDATE email_accounts SET last_sent_at = GREATEST(:now, email_accounts.last_sent_at + interval '1 microsecond')
FROM reserved
WHERE email_accounts.id = reserved.account_id
RETURNING email_accounts.id
"""
)

RELEASE_SQL = text(
    """
UPDATE account_daily_usage
SET sends = GREATEST(sends - 1, 0),
    new_contacts = GREATEST(new_contacts - CASE WHEN :first_step THEN 1 ELSE 0 END, 0)
WHERE account_id = :account_id AND day = :day
"""
)


@dataclass(frozen=True)
class PickRequest:
    campaign_id: uuid.UUID
    campaign_type: str
    min_health_score: float
    first_step: bool
    now: datetime
    only_account: uuid.UUID | None = None
    """A threaded follow-up goes through the inbox that sent step 1, or waits for it."""


async def pick_inbox(session: AsyncSession, request: PickRequest) -> uuid.UUID | None:
    """The picked inbox with one send reserved today, or None when no inbox is eligible now."""
    row = (
        await session.execute(
            PICK_SQL,
            {
                "campaign_id": request.campaign_id,
                "only_account": request.only_account,
                "min_health": request.min_health_score,
                "min_stage": MIN_STAGE[request.campaign_type],
                "now": request.now,
                "campaign_type": request.campaign_type,
                "first_step": request.first_step,
                "day": utc_day(request.now),
            },
        )
    ).first()
    return row[0] if row else None


async def release(session: AsyncSession, account_id: uuid.UUID, *, first_step: bool, day: date) -> None:
    """Give back a reservation whose message never reached SMTP (handed back, suppressed, MX failed)."""
    await session.execute(RELEASE_SQL, {"account_id": account_id, "first_step": first_step, "day": day})
