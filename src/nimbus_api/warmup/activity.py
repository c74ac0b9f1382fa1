"""``GET /v1/email-accounts/{id}/warmup/activity``: an inbox's warmup exchange per day, from its own rows.

Only counts, and only of rows where this inbox is the sender or the recipient: nothing about the other
inbox (its address, workspace, or anything else) is shown, so the platform pool leaks nothing across
workspaces. Two grouped queries over the last ``days`` UTC days; days without activity are zeros.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.models import WarmupMessage
from nimbus_api.warmup.schemas import WarmupActivity, WarmupDay


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.count(case((condition, 1)))


async def activity(session: AsyncSession, account_id: uuid.UUID, days: int, now: datetime) -> WarmupActivity:
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time(0), tzinfo=UTC)
    w = WarmupMessage
    sent_day = cast(func.timezone("UTC", w.sent_at), Date)
    sent_rows = await session.execute(
        select(
            sent_day,
            func.count(),
            _count(w.landed == "inbox"),
            _count(w.landed == "junk"),
            _count(w.rescued.is_(True)),
            _count(w.replied.is_(True)),
        )
        .where(w.sender_id == account_id, w.state == "sent", w.sent_at >= since)
        .group_by(sent_day)
    )
    received_day = cast(func.timezone("UTC", w.received_at), Date)
    received_rows = await session.execute(
        select(received_day, func.count(), _count(w.landed == "junk"))
        .where(w.recipient_id == account_id, w.received_at >= since)
        .group_by(received_day)
    )
    out = {
        first + timedelta(days=i): WarmupDay(
            day=first + timedelta(days=i),
            sent=0,
            landed_inbox=0,
            landed_junk=0,
            rescued=0,
            replied=0,
            received=0,
            received_in_junk=0,
        )
        for i in range(days)
    }
    for day, sent, inbox, junk, rescued, replied in sent_rows:
        if day in out:
            entry = out[day]
            entry.sent, entry.landed_inbox, entry.landed_junk = sent, inbox, junk
            entry.rescued, entry.replied = rescued, replied
    for day, received, in_junk in received_rows:
        if day in out:
            out[day].received, out[day].received_in_junk = received, in_junk
    return WarmupActivity(account_id=account_id, days=[out[d] for d in sorted(out)])
