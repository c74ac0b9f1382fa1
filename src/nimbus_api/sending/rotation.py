"""Rotation: pick eligible inboxes of a campaign's pool and reserve their budgets, in one statement.

Eligible means: in the pool and not disabled there by the bounce guard; active and not disabled;
``overall_score >= min_health_score``; ``current_stage`` at least 3 for cold campaigns, 2 for nurture;
not in cooldown; the campaign's type allowed on the inbox; its domain not paused; under
its effective daily limit today (UTC; ``daily_send_limit`` ramped by the stage, ``stages.limits``)
and, for step 1, under ``daily_new_contacts_limit``; past ``min_send_interval_seconds`` since its last
pick. Among eligible
inboxes the least recently used goes first.

The candidates are read in rotation order from ``ix_email_accounts_rotation`` (workspace, ``last_sent_at``
NULLS FIRST, id): the plan walks the workspace's inboxes from the least recently used and stops at the
first ``n`` eligible members of the pool, instead of reading and sorting the whole pool (among 1,000
inboxes, a pick's median went from 2.5 ms to 1.2 ms on the benchmark machine). PostgreSQL still chooses
by cost: for a pool that is a small part of its workspace it reads the pool first, as before. Inboxes
that stay ineligible (disabled, below the health floor) keep their old stamps and so stay at the front;
a walk passes them at a fraction of a microsecond each.

One statement picks ``n`` sends at once (``pick_inboxes``; ``pick_inbox`` is ``n = 1``, a shorter
statement): the ``n`` least recently used eligible inboxes are locked (``FOR UPDATE ... SKIP LOCKED``),
the sends are dealt to them round-robin in that order, each inbox capped by its room today (a water
level keeps the dealt slots under ``n`` plus the number of inboxes), today's usage rows are incremented,
and ``last_sent_at`` is stamped in the order of each inbox's last slot (microseconds past the newest
stamp of any inbox of the workspace, one index lookup, so several picks at the same moment still rotate;
pools never span workspaces, so only the order within a workspace matters). The result
equals ``n`` consecutive single picks (an inbox with a ``min_send_interval_seconds`` takes one send per
pick). The locks are held until the caller's transaction ends, so concurrent dispatchers never pick the
same inbox at once and never spend a budget twice. A later statement in the same transaction sees the
increment, so one transaction may pick many times.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.campaigns.eligibility import MIN_STAGE
from nimbus_api.kit.db import utc_day
from nimbus_api.stages.limits import effective_limit_sql

# The daily limit in force: the configured ceiling ramped by the stage (``stages.limits``, one definition).
_LIMIT = effective_limit_sql("a")

_CANDIDATES = (
    """
WITH candidate AS (
    SELECT a.id, a.last_sent_at, """  # noqa: S608 - constant SQL (the limit expression comes from the stage table)
    + _LIMIT
    + """ AS daily_send_limit, a.daily_new_contacts_limit,
           LEAST("""
    + _LIMIT
    + """ - COALESCE(u.sends, 0),
                 CASE WHEN :first_step AND a.daily_new_contacts_limit IS NOT NULL
                      THEN a.daily_new_contacts_limit - COALESCE(u.new_contacts, 0) END,
                 -- an inbox with a minimum interval between sends takes one per pick
                 CASE WHEN a.min_send_interval_seconds > 0 THEN 1 END,
                 :n) AS room
    FROM campaign_accounts ca
    JOIN email_accounts a ON a.id = ca.account_id
    JOIN domains d ON d.id = a.domain_id
    LEFT JOIN account_daily_usage u ON u.account_id = a.id AND u.day = :day
    WHERE ca.campaign_id = :campaign_id
      AND ca.disabled_at IS NULL  -- the bounce guard took it out of this campaign (campaigns.bounce_guard)
      -- A pool's inboxes are its workspace's: this lets the plan walk ix_email_accounts_rotation (the
      -- workspace's inboxes, least recently used first) and stop at the first :n eligible ones.
      AND a.workspace_id = :workspace_id
      AND (CAST(:only_account AS uuid) IS NULL OR a.id = CAST(:only_account AS uuid))
      AND a.is_active AND a.disabled_at IS NULL
      AND a.overall_score >= :min_health
      AND a.current_stage >= :min_stage
      AND (a.cooldown_until IS NULL OR a.cooldown_until <= :now)
      AND CAST(:campaign_type AS varchar) = ANY(a.campaign_types)
      AND NOT d.is_paused
      AND COALESCE(u.sends, 0) < """
    + _LIMIT
    + """
      AND (NOT :first_step OR a.daily_new_contacts_limit IS NULL
           OR COALESCE(u.new_contacts, 0) < a.daily_new_contacts_limit)
      AND (a.min_send_interval_seconds = 0 OR a.last_sent_at IS NULL
           OR a.last_sent_at <= CAST(:now AS timestamptz) - make_interval(secs => a.min_send_interval_seconds))
    ORDER BY a.last_sent_at ASC NULLS FIRST, a.id
    LIMIT :n
    -- NO KEY UPDATE: concurrent picks exclude each other, while the key-share locks that foreign keys
    -- take on the inbox row (a sender recording attempts) do not make it look busy.
    FOR NO KEY UPDATE OF a SKIP LOCKED
)"""
)
"""The eligible inboxes of the pool, least recently used first, ``:n`` of them locked (``SKIP LOCKED``),
each with its room today."""

_NEWEST_STAMP = """
SELECT GREATEST(CAST(:now AS timestamptz), max(last_sent_at)) FROM email_accounts WHERE workspace_id = :workspace_id
"""
"""A pick's stamp base: now, or the newest stamp of the workspace's inboxes (one lookup at the back of
``ix_email_accounts_rotation``) when that is later."""

PICK_SQL = text(
    _CANDIDATES  # noqa: S608 - constant SQL text, values are bound parameters
    + """, ranked AS (
    SELECT id, room,
           row_number() OVER (ORDER BY last_sent_at ASC NULLS FIRST, id) AS lru,
           row_number() OVER (ORDER BY room, id) AS j,
           count(*) OVER () AS m,
           COALESCE(lag(room) OVER (ORDER BY room, id), 0) AS below_room,
           COALESCE(sum(room) OVER (ORDER BY room, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS below
    FROM candidate
), level AS (
    -- Water level: the fewest sends per inbox that covers :n in round-robin (each inbox capped by its room).
    SELECT COALESCE(MIN(k) FILTER (WHERE k > below_room AND k <= room), MAX(room)) AS l
    FROM (SELECT room, below_room, CEIL((:n - below)::numeric / (m - j + 1))::int AS k FROM ranked) s
), slot AS (
    SELECT r.id, r.lru, row_number() OVER (ORDER BY g, r.lru) AS position
    FROM ranked r, level, generate_series(1, LEAST(r.room, level.l)) g
), allotted AS (
    SELECT id, min(lru) AS lru, count(*)::int AS take, max(position) AS last_position
    FROM slot WHERE position <= :n GROUP BY id
), reserved AS (
    INSERT INTO account_daily_usage AS u (account_id, day, sends, new_contacts)
    SELECT id, :day, take, CASE WHEN :first_step THEN take ELSE 0 END FROM allotted
    ON CONFLICT (account_id, day) DO UPDATE
        SET sends = u.sends + EXCLUDED.sends, new_contacts = u.new_contacts + EXCLUDED.new_contacts
        -- Checked again on the latest committed row: the candidate's read of usage may predate a
        -- concurrent reservation that committed while this statement waited for the inbox's lock.
        WHERE u.sends + EXCLUDED.sends <= (SELECT c.daily_send_limit FROM candidate c WHERE c.id = u.account_id)
          AND (NOT :first_step
               OR (SELECT c.daily_new_contacts_limit FROM candidate c WHERE c.id = u.account_id) IS NULL
               OR u.new_contacts + EXCLUDED.new_contacts
                  <= (SELECT c.daily_new_contacts_limit FROM candidate c WHERE c.id = u.account_id))
    RETURNING account_id
)
UPDATE email_accounts
SET last_sent_at = stamp.base + make_interval(secs => allotted.last_position / 1e6)
FROM reserved JOIN allotted ON allotted.id = reserved.account_id, ("""
    + _NEWEST_STAMP
    + """) stamp(base)
WHERE email_accounts.id = reserved.account_id
RETURNING email_accounts.id, allotted.take, allotted.lru
"""
)

PICK_ONE_SQL = text(
    _CANDIDATES  # noqa: S608 - constant SQL text, values are bound parameters
    + """, reserved AS (
    INSERT INTO account_daily_usage AS u (account_id, day, sends, new_contacts)
    SELECT id, :day, 1, CASE WHEN :first_step THEN 1 ELSE 0 END FROM candidate
    ON CONFLICT (account_id, day) DO UPDATE
        SET sends = u.sends + 1, new_contacts = u.new_contacts + EXCLUDED.new_contacts
        WHERE u.sends < (SELECT daily_send_limit FROM candidate)
          AND (NOT :first_step OR (SELECT daily_new_contacts_limit FROM candidate) IS NULL
               OR u.new_contacts < (SELECT daily_new_contacts_limit FROM candidate))
    RETURNING account_id
)
UPDATE email_accounts
SET last_sent_at = ("""
    + _NEWEST_STAMP
    + """) + interval '1 microsecond'
FROM reserved
WHERE email_accounts.id = reserved.account_id
RETURNING email_accounts.id, 1, 1
"""
)
"""``PICK_SQL`` for one send (``:n`` = 1): the same candidates, reservation and stamp, without dealing
slots (a shorter statement to plan: the common case of a follow-up, and what ``bench_pick`` times)."""

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
    workspace_id: uuid.UUID
    campaign_id: uuid.UUID
    campaign_type: str
    min_health_score: float
    first_step: bool
    now: datetime
    only_account: uuid.UUID | None = None
    """A threaded follow-up goes through the inbox that sent step 1, or waits for it."""


async def pick_inboxes(session: AsyncSession, request: PickRequest, count: int) -> list[uuid.UUID]:
    """Up to ``count`` sends, each with an inbox picked and its send reserved today, in one statement.

    The result is in rotation order: exactly the inboxes ``count`` consecutive single picks would give
    (least recently used first, round-robin, an inbox leaving the rotation when its room for today is
    used). Shorter than ``count`` when the pool has not that much room now; empty when no inbox is eligible.
    """
    if count < 1:
        return []
    rows = (
        await session.execute(
            PICK_ONE_SQL if count == 1 else PICK_SQL,
            {
                "workspace_id": request.workspace_id,
                "campaign_id": request.campaign_id,
                "only_account": request.only_account,
                "min_health": request.min_health_score,
                "min_stage": MIN_STAGE[request.campaign_type],
                "now": request.now,
                "campaign_type": request.campaign_type,
                "first_step": request.first_step,
                "day": utc_day(request.now),
                "n": count,
            },
        )
    ).all()
    takes = sorted(((lru, account_id, take) for account_id, take, lru in rows), key=lambda row: row[0])
    order: list[uuid.UUID] = []
    for turn in range(max((take for _, _, take in takes), default=0)):
        order.extend(account_id for _, account_id, take in takes if take > turn)
    return order


async def pick_inbox(session: AsyncSession, request: PickRequest) -> uuid.UUID | None:
    """The picked inbox with one send reserved today, or None when no inbox is eligible now."""
    picked = await pick_inboxes(session, request, 1)
    return picked[0] if picked else None


async def release(session: AsyncSession, account_id: uuid.UUID, *, first_step: bool, day: date) -> None:
    """Give back a reservation whose message never reached SMTP (handed back, suppressed, MX failed)."""
    await session.execute(RELEASE_SQL, {"account_id": account_id, "first_step": first_step, "day": day})
