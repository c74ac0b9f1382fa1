"""The one transition that counts: a warmup message becomes ``sent``.

Whoever proves a warmup message went out (the sender's SMTP reply, or the recipient's sync finding it after
the sender lost track) calls ``count_sent`` in the same transaction as the state change, for the rows whose
state it actually changed: ``email_accounts.warmup_sent_total`` goes up once per message (stages are earned
on it), and the message a reply answers is marked ``replied``. Campaign budgets are never touched.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_ADD_TOTALS = text(
    """
    UPDATE email_accounts a SET warmup_sent_total = a.warmup_sent_total + v.n
    FROM unnest(CAST(:ids AS uuid[]), CAST(:ns AS int[])) AS v(id, n)
    WHERE a.id = v.id
    """
)
_REPLIED = text("UPDATE warmup_messages SET replied = true WHERE id = ANY(CAST(:ids AS uuid[]))")


async def count_sent(session: AsyncSession, rows: Iterable[tuple[uuid.UUID, uuid.UUID | None]]) -> None:
    """``rows``: ``(sender_id, parent_id)`` of each message that has just become ``sent``."""
    totals: Counter[uuid.UUID] = Counter()
    parents: list[uuid.UUID] = []
    for sender_id, parent_id in rows:
        totals[sender_id] += 1
        if parent_id is not None:
            parents.append(parent_id)
    if totals:
        ids = sorted(totals)
        await session.execute(_ADD_TOTALS, {"ids": ids, "ns": [totals[i] for i in ids]})
    if parents:
        await session.execute(_REPLIED, {"ids": parents})
