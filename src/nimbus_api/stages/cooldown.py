"""Cooldown: a timed stop of an inbox after a burst of hard bounces or any complaint.

Rules (settings, defaults in brackets):

* **bounce burst**: when a hard bounce report is applied (``inbox.effects``) and the inbox has at least
  ``NIMBUS_COOLDOWN_BOUNCE_BURST`` [3] hard bounces whose ``messages.bounced_at`` fall within the last
  ``NIMBUS_COOLDOWN_BOUNCE_WINDOW_MINUTES`` [60], the inbox cools down until
  ``NIMBUS_COOLDOWN_BOUNCE_MINUTES`` [720] after the latest of those bounces. A hard bounce is one whose
  reason says the address is bad (``classify.types.HARD_REASONS``: ``bounce.userunknown`` ...).
* **complaint**: any complaint applied puts the inbox in cooldown until ``NIMBUS_COOLDOWN_COMPLAINT_MINUTES``
  [1440] after it.

``email_accounts.cooldown_until`` only moves forward (``GREATEST`` with what it holds), so a longer
cooldown is never shortened by a shorter one. The end is computed from stored times, not from the number
of calls: applying the same burst again changes nothing, and a continuing burst (each new hard bounce
while the window still holds N of them) moves the end to the cooldown length after that newest bounce.
So a cooldown ends at most ``NIMBUS_COOLDOWN_BOUNCE_MINUTES`` after the last hard bounce of the burst,
and at most ``NIMBUS_COOLDOWN_COMPLAINT_MINUTES`` after the last complaint; it never runs on by itself.
Each move of the end is recorded as an ``AccountEvent`` (kind ``cooldown``, actor ``platform``).

The rotation skips an inbox in cooldown (``sending.rotation``); the warmup engine asks
``stages.pause.warmup_may_send``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify.types import HARD_REASONS
from nimbus_api.models import AccountEvent

HARD_ERROR_CODES = sorted(f"bounce.{reason}" for reason in HARD_REASONS)


@dataclass(frozen=True)
class CooldownRules:
    bounce_burst: int = 3
    bounce_window_minutes: int = 60
    bounce_minutes: int = 720
    complaint_minutes: int = 1440

    @classmethod
    def from_settings(cls, settings: Any) -> CooldownRules:
        """From ``config.Settings`` (typed loosely so adapters below config need not import it)."""
        return cls(
            bounce_burst=settings.cooldown_bounce_burst,
            bounce_window_minutes=settings.cooldown_bounce_window_minutes,
            bounce_minutes=settings.cooldown_bounce_minutes,
            complaint_minutes=settings.cooldown_complaint_minutes,
        )


_BURST = text(
    """
    WITH burst AS (
        SELECT count(*) AS bounces, max(m.bounced_at) AS latest
        FROM messages m
        WHERE m.account_id = :account_id AND m.state = 'bounced'
          AND m.error_code = ANY(CAST(:codes AS varchar[]))
          AND m.bounced_at > CAST(:now AS timestamptz) - make_interval(mins => :window)
          AND m.bounced_at <= CAST(:now AS timestamptz)
    ), before AS (
        SELECT cooldown_until FROM email_accounts WHERE id = :account_id FOR NO KEY UPDATE
    )
    UPDATE email_accounts a
    SET cooldown_until = burst.latest + make_interval(mins => :minutes)
    FROM burst, before
    WHERE a.id = :account_id AND burst.bounces >= :burst
      AND (before.cooldown_until IS NULL OR before.cooldown_until < burst.latest + make_interval(mins => :minutes))
    RETURNING a.workspace_id, before.cooldown_until, a.cooldown_until, burst.bounces
    """
)

_COMPLAINT = text(
    """
    WITH before AS (
        SELECT cooldown_until FROM email_accounts WHERE id = :account_id FOR NO KEY UPDATE
    )
    UPDATE email_accounts a
    SET cooldown_until = CAST(:now AS timestamptz) + make_interval(mins => :minutes)
    FROM before
    WHERE a.id = :account_id
      AND (before.cooldown_until IS NULL
           OR before.cooldown_until < CAST(:now AS timestamptz) + make_interval(mins => :minutes))
    RETURNING a.workspace_id, before.cooldown_until, a.cooldown_until, 0
    """
)


async def after_hard_bounce(
    session: AsyncSession, account_id: uuid.UUID, now: datetime, rules: CooldownRules
) -> datetime | None:
    """Call after a hard bounce was recorded on its message (``bounced_at`` set and flushed): the new
    ``cooldown_until`` when this made or moved a cooldown, else None."""
    row = (
        await session.execute(
            _BURST,
            {
                "account_id": account_id,
                "codes": HARD_ERROR_CODES,
                "now": now,
                "window": rules.bounce_window_minutes,
                "minutes": rules.bounce_minutes,
                "burst": rules.bounce_burst,
            },
        )
    ).one_or_none()
    return _record(session, account_id, row, "bounce_burst", rules)


async def after_complaint(
    session: AsyncSession, account_id: uuid.UUID, now: datetime, rules: CooldownRules
) -> datetime | None:
    row = (
        await session.execute(_COMPLAINT, {"account_id": account_id, "now": now, "minutes": rules.complaint_minutes})
    ).one_or_none()
    return _record(session, account_id, row, "complaint", rules)


def _record(
    session: AsyncSession,
    account_id: uuid.UUID,
    row: Any,
    reason: Literal["bounce_burst", "complaint"],
    rules: CooldownRules,
) -> datetime | None:
    if row is None:
        return None
    workspace_id, before, until, bounces = row
    detail: dict[str, Any] = {
        "reason": reason,
        "from": before.isoformat() if before is not None else None,
        "until": until.isoformat(),
    }
    if reason == "bounce_burst":
        detail |= {"hard_bounces": bounces, "window_minutes": rules.bounce_window_minutes}
    session.add(
        AccountEvent(workspace_id=workspace_id, account_id=account_id, kind="cooldown", actor="platform", detail=detail)
    )
    result: datetime = until
    return result
