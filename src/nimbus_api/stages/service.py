"""Stage rules applied to rows: the platform's set-based stage update and a person's override.

State of an inbox's stage::

    platform-driven (stage_override NULL) --PATCH current_stage / stage_override = n--> overridden (n)
    overridden --PATCH stage_override = null--> platform-driven (stage recomputed at once)

While platform-driven, ``apply_stages`` sets ``current_stage`` to ``get_inbox_stage`` (promotion and
demotion alike) and records each change as an ``AccountEvent`` (``stage_changed``, actor ``platform``,
with the values that decided it). While overridden, the stage is the person's and the platform never
changes it; ``warmup_progress`` follows whatever the stage is. Services flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_id
from nimbus_api.models import AccountEvent, EmailAccount
from nimbus_api.stages.stages import RateThresholds, progress_sql, stage_sql, warmup_progress

PLATFORM = "platform"

APPLY_SQL = text(
    """
    WITH batch AS (
        SELECT a.id, a.current_stage AS old_stage, a.stage_override, a.warmup_sent_total AS sent,
               COALESCE(a.stage_override, """  # noqa: S608 - constant SQL from the stage table, values bound
    + stage_sql("a")
    + """) AS new_stage
        FROM email_accounts a
        WHERE CAST(:ids AS uuid[]) IS NULL OR a.id = ANY(CAST(:ids AS uuid[]))
    ), computed AS (
        SELECT b.*, """
    + progress_sql("b.new_stage", "b.sent")
    + """ AS new_progress
        FROM batch b
    )
    UPDATE email_accounts a
    SET current_stage = c.new_stage,
        warmup_progress = c.new_progress,
        updated_at = CASE WHEN a.current_stage <> c.new_stage THEN CAST(:now AS timestamptz) ELSE a.updated_at END
    FROM computed c
    WHERE a.id = c.id AND (a.current_stage <> c.new_stage OR a.warmup_progress <> c.new_progress)
    RETURNING a.id, a.workspace_id, c.old_stage, c.new_stage, c.stage_override, a.warmup_sent_total,
              a.overall_score, a.bounce_rate_7d, a.complaint_rate_7d
    """
)
"""One statement over the batch (``:ids``; NULL: every inbox): each row's stage and progress from the
table, written only where they differ from what is stored."""


@dataclass(frozen=True)
class StageChange:
    account_id: uuid.UUID
    workspace_id: uuid.UUID
    old: int
    new: int


async def apply_stages(
    session: AsyncSession,
    account_ids: Sequence[uuid.UUID] | None = None,
    *,
    settings: RateThresholds,
    now: datetime | None = None,
) -> list[StageChange]:
    """Bring ``current_stage`` and ``warmup_progress`` of these inboxes (None: all) in line with the stage
    table, in one UPDATE; record every stage change. For the health recompute to call right after it
    moved scores or rates (same transaction), and for the periodic task. ORM objects of these inboxes
    loaded before the call are stale afterwards (refresh them)."""
    moment = now or utcnow()
    rows = (
        await session.execute(
            APPLY_SQL,
            {
                "ids": None if account_ids is None else list(account_ids),
                "max_bounce": settings.warmup_max_bounce_rate_7d,
                "max_complaint": settings.warmup_max_complaint_rate_7d,
                "now": moment,
            },
        )
    ).all()
    changes = []
    events = []
    for account_id, workspace_id, old, new, override, sent, score, bounce, complaint in rows:
        if old == new:
            continue  # only the progress moved
        changes.append(StageChange(account_id, workspace_id, old, new))
        events.append(
            {
                "id": new_id(),
                "workspace_id": workspace_id,
                "account_id": account_id,
                "kind": "stage_changed",
                "actor": PLATFORM,
                "created_at": moment,
                "detail": {
                    "from": old,
                    "to": new,
                    "stage_override": override,
                    "warmup_sent_total": sent,
                    "overall_score": score,
                    "bounce_rate_7d": bounce,
                    "complaint_rate_7d": complaint,
                },
            }
        )
    if events:  # one multi-row INSERT per thousand events (executemany), not an ORM object each
        await session.execute(insert(AccountEvent), events)
    return changes


def set_override(session: AsyncSession, account: EmailAccount, stage: int, *, actor: str) -> None:
    """A person sets the stage (an inbox warmed elsewhere): it holds until they clear the override. A
    changed stage is recorded (``stage_changed``, the person as actor), as it always was."""
    if stage != account.current_stage:
        session.add(
            AccountEvent(
                workspace_id=account.workspace_id,
                account_id=account.id,
                kind="stage_changed",
                actor=actor,
                detail={"from": account.current_stage, "to": stage},
            )
        )
    account.stage_override = stage
    account.current_stage = stage
    account.warmup_progress = warmup_progress(stage, account.warmup_sent_total)


async def clear_override(
    session: AsyncSession, account: EmailAccount, *, actor: str, settings: RateThresholds | None
) -> None:
    """The platform drives the stage again. With ``settings`` the stage is recomputed at once (else at the
    next periodic run). Recorded as ``stage_override_cleared``."""
    if account.stage_override is None:
        return
    session.add(
        AccountEvent(
            workspace_id=account.workspace_id,
            account_id=account.id,
            kind="stage_override_cleared",
            actor=actor,
            detail={"stage": account.stage_override},
        )
    )
    account.stage_override = None
    await session.flush()
    if settings is not None:
        await apply_stages(session, [account.id], settings=settings)
        await session.refresh(account)
