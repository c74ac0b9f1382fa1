"""The sweeper: returns work that a dead worker or a wiped Redis left behind.

* A ``leased`` message whose lease expired: if an attempt was started and never finished, the SMTP
  transaction may have completed -> ``unknown`` (never resent); otherwise it never reached the wire ->
  ``queued`` again.
* Every inbox with due messages (``queued``, or ``deferred`` past ``retry_at``) is returned so the caller
  can wake its sender: a lost queue entry in Redis costs one sweep interval, nothing more.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.models import Enrollment, Message, SendAttempt


@dataclass
class SweepReport:
    requeued: int = 0
    unknown: int = 0
    inboxes_with_work: list[uuid.UUID] = field(default_factory=list)
    recovered_inboxes: list[uuid.UUID] = field(default_factory=list)
    """Inboxes whose expired leases were returned: their sender died (see ``tasks.sweep_tick``)."""


async def sweep(session: AsyncSession, now: datetime) -> SweepReport:
    report = SweepReport()
    expired = (Message.state == "leased") & (Message.lease_expires_at < now)
    unfinished = exists().where(SendAttempt.message_id == Message.id, SendAttempt.outcome == "started")
    lost_rows = (
        await session.execute(
            update(Message)
            .where(expired, unfinished)
            .values(state="unknown", lease_owner=None, lease_expires_at=None, error_code="worker_lost")
            .returning(Message.enrollment_id, Message.account_id)
        )
    ).all()
    lost = [enrollment_id for enrollment_id, _ in lost_rows]
    recovered = {account_id for _, account_id in lost_rows}
    if lost:
        await session.execute(
            update(SendAttempt)
            .where(
                SendAttempt.outcome == "started",
                SendAttempt.message_id.in_(
                    select(Message.id).where(Message.enrollment_id.in_(lost), Message.state == "unknown")
                ),
            )
            .values(outcome="unknown", finished_at=now)
        )
        await session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(lost), Enrollment.status == "active")
            .values(status="failed", stop_reason="delivery unknown")
        )
    report.unknown = len(lost)
    requeued = (
        await session.execute(
            update(Message)
            .where(expired)
            .values(state="queued", lease_owner=None, lease_expires_at=None)
            .returning(Message.id, Message.account_id)
        )
    ).all()
    report.requeued = len(requeued)
    recovered |= {account_id for _, account_id in requeued}
    report.recovered_inboxes = sorted(account_id for account_id in recovered if account_id is not None)
    due = or_(Message.state == "queued", and_(Message.state == "deferred", Message.retry_at <= now))
    report.inboxes_with_work = list(
        await session.scalars(select(Message.account_id).where(due, Message.account_id.is_not(None)).distinct())
    )
    return report
