"""The planner: each warming inbox's warmup messages of the day, as ``planned`` rows with a send time.

Run every few minutes (``tasks.warmup_plan``); it only adds what is missing, so running it again, or on
two workers at once, plans nothing twice: slot ``n`` of an inbox's day is unique (``sender_id, day,
slot``) and inserted with ``ON CONFLICT DO NOTHING``.

* **How many.** An inbox's day holds at most its ``warmup_daily_limit`` warmup messages (NULL: the
  deployment's ``NIMBUS_WARMUP_DAILY_LIMIT``), replies included; ``floor(limit * reply_share)`` of them are
  left to replies, the rest are planned as new threads. Campaign budgets (``account_daily_usage``) are not
  touched: warmup sends are counted here only.
* **When.** Spread over what is left of the day's window (``NIMBUS_WARMUP_WINDOW_START_HOUR`` ..
  ``_END_HOUR``, UTC): the remaining window is cut into as many equal parts as there are new slots and each
  send falls at a random moment of its own part, so sends are neither bunched nor on a grid.
* **To whom.** Another warming inbox of the pool (the whole deployment, or the sender's workspace with
  ``NIMBUS_WARMUP_POOL=workspace``), on another domain whenever the pool has one; among those, the one that
  receives the fewest warmup messages that day (ties at random), so the load evens out.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.config import Settings
from nimbus_api.kit.db import utc_day
from nimbus_api.kit.ids import new_ids
from nimbus_api.models import EmailAccount, WarmupMessage
from nimbus_api.sending.mime import new_message_ids
from nimbus_api.stages.stages import RateThresholds
from nimbus_api.warmup import phrases
from nimbus_api.warmup.pause import can_send


@dataclass(frozen=True)
class PlanConfig:
    pool: str
    default_limit: int
    reply_share: float
    window_start_hour: int
    window_end_hour: int
    thresholds: RateThresholds

    @classmethod
    def of(cls, settings: Settings) -> PlanConfig:
        return cls(
            pool=settings.warmup_pool,
            default_limit=settings.warmup_daily_limit,
            reply_share=settings.warmup_reply_share,
            window_start_hour=settings.warmup_window_start_hour,
            window_end_hour=max(settings.warmup_window_end_hour, settings.warmup_window_start_hour + 1),
            thresholds=settings,
        )


def daily_limit(account: EmailAccount, default: int) -> int:
    return account.warmup_daily_limit if account.warmup_daily_limit is not None else default


def new_threads(limit: int, reply_share: float) -> int:
    """How many of a day's ``limit`` warmup messages are planned as new threads (the rest wait for replies)."""
    if limit <= 0:
        return 0
    return max(1, limit - math.floor(limit * reply_share))


def send_times(now: datetime, day: date, count: int, config: PlanConfig, rng: random.Random) -> list[datetime]:
    """``count`` moments in what is left of ``day``'s window, one at random in each of ``count`` equal parts."""
    start = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(hours=config.window_start_hour)
    end = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(hours=config.window_end_hour)
    start = max(start, now)
    if count <= 0 or start >= end:
        return []
    part = (end - start) / count
    return [start + part * i + part * rng.random() for i in range(count)]


def _domain(account: EmailAccount) -> str:
    return account.email.rpartition("@")[2].lower()


class Recipients:
    """Who receives next, per pool scope: a min-heap on the day's load (ties at random) per group (the whole
    pool, or one workspace), so a pick costs a few heap operations, not a scan of the pool: 10,000 inboxes
    plan in well under a second. A pick skips the sender itself and, while another is left, its domain."""

    def __init__(self, pool: list[EmailAccount], load: Counter[uuid.UUID], scope: str, rng: random.Random) -> None:
        self._rng = rng
        self._scope = scope
        self._heaps: dict[uuid.UUID | None, list[tuple[int, float, int]]] = {}
        self._accounts = pool
        for index, account in enumerate(pool):
            heapq.heappush(self._heaps.setdefault(self._group(account), []), (load[account.id], rng.random(), index))

    def _group(self, account: EmailAccount) -> uuid.UUID | None:
        return account.workspace_id if self._scope == "workspace" else None

    def pick(self, sender: EmailAccount) -> EmailAccount | None:
        heap = self._heaps.get(self._group(sender), [])
        skipped: list[tuple[int, float, int]] = []
        chosen: tuple[int, float, int] | None = None
        while heap:
            entry = heapq.heappop(heap)
            account = self._accounts[entry[2]]
            if account.id != sender.id and _domain(account) != _domain(sender):
                chosen = entry
                break
            skipped.append(entry)
        if chosen is None:  # nobody on another domain: the least loaded on the same one
            same = [e for e in skipped if self._accounts[e[2]].id != sender.id]
            chosen = same[0] if same else None
            skipped = [e for e in skipped if e is not chosen]
        for entry in skipped:
            heapq.heappush(heap, entry)
        if chosen is None:
            return None
        heapq.heappush(heap, (chosen[0] + 1, self._rng.random(), chosen[2]))
        return self._accounts[chosen[2]]


async def _pool(session: AsyncSession) -> list[EmailAccount]:
    rows = await session.scalars(
        select(EmailAccount)
        .where(
            EmailAccount.warmup_enabled.is_(True),
            EmailAccount.is_active.is_(True),
            EmailAccount.disabled_at.is_(None),
            EmailAccount.imap_host.is_not(None),
        )
        .order_by(EmailAccount.id)
    )
    return list(rows)


_INSERT = text(
    """
    INSERT INTO warmup_messages (id, sender_id, recipient_id, day, slot, depth, seed, subject, message_id_header,
                                 state, send_at, attempts, rescued, flagged, replied, created_at)
    SELECT v.id, v.sender_id, v.recipient_id, CAST(:day AS date), v.slot, 0, v.seed, v.subject, v.mid,
           'planned', v.send_at, 0, false, false, false, CAST(:now AS timestamptz)
    FROM unnest(CAST(:ids AS uuid[]), CAST(:senders AS uuid[]), CAST(:recipients AS uuid[]), CAST(:slots AS int[]),
                CAST(:seeds AS bigint[]), CAST(:subjects AS varchar[]), CAST(:mids AS varchar[]),
                CAST(:send_ats AS timestamptz[]))
         AS v(id, sender_id, recipient_id, slot, seed, subject, mid, send_at)
    ON CONFLICT (sender_id, day, slot) DO NOTHING
    RETURNING id
    """
)
"""One statement for the whole plan: arrays in, the rows this run added out (a slot planned meanwhile by
another run is left as it is)."""


async def plan(session: AsyncSession, config: PlanConfig, now: datetime, rng: random.Random | None = None) -> int:
    """Add today's missing rows for every warming inbox; returns how many were planned. Flushes only."""
    rng = rng or random.Random()  # noqa: S311 - spreading sends, not secrecy
    day = utc_day(now)
    pool = await _pool(session)
    if len(pool) < 2:
        return 0
    per_sender = dict(
        (
            await session.execute(
                select(WarmupMessage.sender_id, func.count())
                .where(WarmupMessage.day == day)
                .group_by(WarmupMessage.sender_id)
            )
        ).all()
    )
    slots_taken: dict[uuid.UUID, set[int]] = {}
    for sender_id, slot in await session.execute(
        select(WarmupMessage.sender_id, WarmupMessage.slot).where(
            WarmupMessage.day == day, WarmupMessage.slot.is_not(None)
        )
    ):
        if slot is not None:
            slots_taken.setdefault(sender_id, set()).add(slot)
    load: Counter[uuid.UUID] = Counter(
        dict(
            (
                await session.execute(
                    select(WarmupMessage.recipient_id, func.count())
                    .where(WarmupMessage.day == day)
                    .group_by(WarmupMessage.recipient_id)
                )
            ).all()
        )
    )
    recipients = Recipients(pool, load, config.pool, rng)
    rows: list[tuple[uuid.UUID, uuid.UUID, int, int, str, str, datetime]] = []
    for sender in pool:
        if not can_send(sender, config.thresholds, now):
            continue
        limit = daily_limit(sender, config.default_limit)
        taken = slots_taken.get(sender.id, set())
        room = limit - per_sender.get(sender.id, 0)
        missing = [s for s in range(new_threads(limit, config.reply_share)) if s not in taken][: max(room, 0)]
        times = send_times(now, day, len(missing), config, rng)
        message_ids = new_message_ids([_domain(sender)] * len(times))
        for slot, send_at, message_id in zip(missing, times, message_ids, strict=False):
            recipient = recipients.pick(sender)
            if recipient is None:
                break
            seed = rng.getrandbits(62)
            rows.append(
                (sender.id, recipient.id, slot, seed, phrases.subject_of(seed), message_id.strip("<>"), send_at)
            )
    if not rows:
        return 0
    columns = list(zip(*rows, strict=True))
    result = await session.execute(
        _INSERT,
        {
            "ids": new_ids(len(rows)),
            "senders": list(columns[0]),
            "recipients": list(columns[1]),
            "slots": list(columns[2]),
            "seeds": list(columns[3]),
            "subjects": list(columns[4]),
            "mids": list(columns[5]),
            "send_ats": list(columns[6]),
            "day": day,
            "now": now,
        },
    )
    return len(result.all())
