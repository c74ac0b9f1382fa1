"""The sweeper: returns work that a dead worker or a wiped Redis left behind.

* A ``leased`` message whose lease expired: its attempt had begun (a lease is taken right before a
  chunk is sent, ``sending.sender``), so the SMTP transaction may have completed -> ``unknown``, with an
  attempt row saying so; it is never resent.
* A message still to be sent (``queued``, or ``deferred``: refused for now, so not delivered) whose inbox
  was deleted (``account_id`` NULL; ``hand_back_orphans``, which deleting an inbox also runs at once):
  the row is deleted and its enrollment is due again, so the dispatcher places the send on another inbox
  of the pool. A chunk that was being sent when the inbox went is recorded by its sender; what it
  recorded ``deferred`` is handed back here.
* A step-1 message still to be sent on an inbox the platform paused (``disabled_at``: its login or relay
  failed, ``record.pause_inbox``), which a sender recorded after the pause handed the inbox's work back:
  handed back the same way, its reservation of the inbox's day released (``hand_back_from_paused``).
  Follow-ups stay: they belong to the thread's inbox and wait for it to be fixed.
* Every inbox with due messages (``queued``, or ``deferred`` past ``retry_at``) is returned so the caller
  can wake its sender: a lost queue entry in Redis costs one sweep interval, nothing more.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.kit.ids import new_id
from nimbus_api.models import Enrollment, Message, SendAttempt


@dataclass
class SweepReport:
    unknown: int = 0
    handed_back: int = 0
    inboxes_with_work: list[uuid.UUID] = field(default_factory=list)
    recovered_inboxes: list[uuid.UUID] = field(default_factory=list)
    """Inboxes whose expired leases were returned: their sender died (see ``tasks.sweep_tick``)."""


async def sweep(session: AsyncSession, now: datetime) -> SweepReport:
    report = SweepReport()
    lost_rows = (
        await session.execute(
            update(Message)
            .where(Message.state == "leased", Message.lease_expires_at < now)
            .values(state="unknown", lease_owner=None, lease_expires_at=None, error_code="worker_lost")
            .returning(Message.id, Message.enrollment_id, Message.account_id)
        )
    ).all()
    if lost_rows:
        await session.execute(
            insert(SendAttempt),
            [
                {
                    "id": new_id(),
                    "message_id": message_id,
                    "account_id": account_id,
                    "outcome": "unknown",
                    "error_code": "worker_lost",
                    "started_at": now,
                    "finished_at": now,
                }
                for message_id, _, account_id in lost_rows
            ],
        )
        await session.execute(
            update(Enrollment)
            .where(
                Enrollment.id.in_([enrollment_id for _, enrollment_id, _ in lost_rows]), Enrollment.status == "active"
            )
            .values(status="failed", stop_reason="delivery unknown")
        )
    report.unknown = len(lost_rows)
    report.handed_back = await hand_back_orphans(session, now) + await hand_back_from_paused(session, now)
    report.recovered_inboxes = sorted({account_id for _, _, account_id in lost_rows if account_id is not None})
    due = or_(Message.state == "queued", and_(Message.state == "deferred", Message.retry_at <= now))
    report.inboxes_with_work = list(
        await session.scalars(select(Message.account_id).where(due, Message.account_id.is_not(None)).distinct())
    )
    return report


async def hand_back_orphans(session: AsyncSession, now: datetime, *, workspace_id: uuid.UUID | None = None) -> int:
    """Sends that lost their inbox (it was deleted) go back to the dispatcher: the message rows are
    deleted (none was delivered: ``queued`` was never tried, ``deferred`` was refused for now) and their
    active enrollments are due at once, at the same step. A threaded follow-up keeps its thread: the
    step-1 message it answers is untouched, and an enrollment whose thread's inbox was the deleted one
    (its foreign key set ``account_id`` NULL) takes the inbox the dispatcher picks; one whose thread's inbox
    still exists keeps it. Returns how many sends were handed back."""
    where: list[ColumnElement[bool]] = [Message.account_id.is_(None), Message.state.in_(("queued", "deferred"))]
    if workspace_id is not None:
        where.append(Message.workspace_id == workspace_id)
    enrollment_ids = list(await session.scalars(delete(Message).where(*where).returning(Message.enrollment_id)))
    if enrollment_ids:
        await session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(enrollment_ids), Enrollment.status == "active")
            .values(next_send_at=now, defer_reason=None, updated_at=now)
        )
    return len(enrollment_ids)


HAND_BACK_FROM_PAUSED_SQL = text(
    """
WITH gone AS (
    DELETE FROM messages m
    USING email_accounts a
    WHERE m.account_id = a.id AND a.disabled_at IS NOT NULL AND m.step = 0 AND m.state IN ('queued', 'deferred')
    RETURNING m.enrollment_id, m.account_id, m.budget_day
), released AS (
    UPDATE account_daily_usage u
    SET sends = GREATEST(u.sends - g.n, 0), new_contacts = GREATEST(u.new_contacts - g.n, 0)
    FROM (SELECT account_id, budget_day, count(*) AS n FROM gone WHERE budget_day IS NOT NULL
          GROUP BY account_id, budget_day) g
    WHERE u.account_id = g.account_id AND u.day = g.budget_day
), due AS (
    UPDATE enrollments e
    SET account_id = NULL, next_send_at = :now, defer_reason = NULL, updated_at = :now
    FROM gone
    WHERE e.id = gone.enrollment_id AND e.status = 'active'
)
SELECT count(*) FROM gone
"""
)


async def hand_back_from_paused(session: AsyncSession, now: datetime) -> int:
    """Step-1 sends left on an inbox the platform paused go back to the dispatcher (see the module
    docstring). Returns how many."""
    return int(await session.scalar(HAND_BACK_FROM_PAUSED_SQL, {"now": now}) or 0)
