"""The sweeper: returns work that a dead worker or a wiped Redis left behind.

* A ``leased`` message whose lease expired: its attempt had begun (a lease is taken right before a
  chunk is sent, ``sending.sender``), so the SMTP transaction may have completed -> ``unknown``, with an
  attempt row saying so; it is never resent.
* Every inbox with due messages (``queued``, or ``deferred`` past ``retry_at``) is returned so the caller
  can wake its sender: a lost queue entry in Redis costs one sweep interval, nothing more.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.kit.ids import new_id
from nimbus_api.models import Enrollment, Message, SendAttempt


@dataclass
class SweepReport:
    unknown: int = 0
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
    report.recovered_inboxes = sorted({account_id for _, _, account_id in lost_rows if account_id is not None})
    due = or_(Message.state == "queued", and_(Message.state == "deferred", Message.retry_at <= now))
    report.inboxes_with_work = list(
        await session.scalars(select(Message.account_id).where(due, Message.account_id.is_not(None)).distinct())
    )
    return report
