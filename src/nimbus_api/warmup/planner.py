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

import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.config import Settings
from nimbus_api.kit.db import utc_day
from nimbus_api.models import EmailAccount, WarmupMessage
from nimbus_api.sending.mime import new_message_id
from nimbus_api.warmup import phrases
from nimbus_api.warmup.pause import PauseThresholds, can_send


@dataclass(frozen=True)
class PlanConfig:
    pool: str
    default_limit: int
    reply_share: float
    window_start_hour: int
    window_end_hour: int
    thresholds: PauseThresholds

    @classmethod
    def of(cls, settings: Settings) -> PlanConfig:
        return cls(
            pool=settings.warmup_pool,
            default_limit=settings.warmup_daily_limit,
            reply_share=settings.warmup_reply_share,
            window_start_hour=settings.warmup_window_start_hour,
            window_end_hour=max(settings.warmup_window_end_hour, settings.warmup_window_start_hour + 1),
            thresholds=PauseThresholds.of(settings),
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


def choose_recipient(
    sender: EmailAccount, pool: list[EmailAccount], load: Counter[uuid.UUID], scope: str, rng: random.Random
) -> EmailAccount | None:
    """Another inbox of the pool: another domain if the pool has one, then the least loaded today."""
    candidates = [
        a for a in pool if a.id != sender.id and (scope == "platform" or a.workspace_id == sender.workspace_id)
    ]
    elsewhere = [a for a in candidates if _domain(a) != _domain(sender)]
    candidates = elsewhere or candidates
    if not candidates:
        return None
    fewest = min(load[a.id] for a in candidates)
    return rng.choice([a for a in candidates if load[a.id] == fewest])


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


async def plan(session: AsyncSession, config: PlanConfig, now: datetime, rng: random.Random | None = None) -> int:
    """Add today's missing rows for every warming inbox; returns how many were planned. Flushes only."""
    rng = rng or random.Random()  # noqa: S311 - spreading sends, not secrecy
    day = utc_day(now)
    pool = await _pool(session)
    if len(pool) < 2:
        return 0
    ids = [a.id for a in pool]
    per_sender = dict(
        (
            await session.execute(
                select(WarmupMessage.sender_id, func.count())
                .where(WarmupMessage.day == day, WarmupMessage.sender_id.in_(ids))
                .group_by(WarmupMessage.sender_id)
            )
        ).all()
    )
    slots_taken: dict[uuid.UUID, set[int]] = {}
    for sender_id, slot in await session.execute(
        select(WarmupMessage.sender_id, WarmupMessage.slot).where(
            WarmupMessage.day == day, WarmupMessage.slot.is_not(None), WarmupMessage.sender_id.in_(ids)
        )
    ):
        if slot is not None:
            slots_taken.setdefault(sender_id, set()).add(slot)
    load: Counter[uuid.UUID] = Counter(
        dict(
            (
                await session.execute(
                    select(WarmupMessage.recipient_id, func.count())
                    .where(WarmupMessage.day == day, WarmupMessage.recipient_id.in_(ids))
                    .group_by(WarmupMessage.recipient_id)
                )
            ).all()
        )
    )
    rows: list[dict[str, object]] = []
    for sender in pool:
        if not can_send(sender, config.thresholds):
            continue
        limit = daily_limit(sender, config.default_limit)
        taken = slots_taken.get(sender.id, set())
        room = limit - per_sender.get(sender.id, 0)
        missing = [s for s in range(new_threads(limit, config.reply_share)) if s not in taken][: max(room, 0)]
        times = send_times(now, day, len(missing), config, rng)
        for slot, send_at in zip(missing, times, strict=False):
            recipient = choose_recipient(sender, pool, load, config.pool, rng)
            if recipient is None:
                break
            load[recipient.id] += 1
            seed = rng.getrandbits(62)
            text = phrases.compose(
                seed,
                sender_name=phrases.first_name(sender.from_name, sender.email),
                recipient_name=phrases.first_name(recipient.from_name, recipient.email),
            )
            rows.append(
                {
                    "sender_id": sender.id,
                    "recipient_id": recipient.id,
                    "day": day,
                    "slot": slot,
                    "depth": 0,
                    "seed": seed,
                    "subject": text.subject,
                    "message_id_header": new_message_id(_domain(sender)).strip("<>"),
                    "state": "planned",
                    "send_at": send_at,
                    "created_at": now,
                }
            )
    if not rows:
        return 0
    stmt = insert(WarmupMessage).on_conflict_do_nothing(index_elements=["sender_id", "day", "slot"])
    result = await session.execute(stmt.returning(WarmupMessage.id), rows)
    return len(result.all())
