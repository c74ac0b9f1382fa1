"""The send figures' hourly rollup gives the exact counts of the rows, read after read, as rows arrive
in the open hour, and when two reads roll up at once."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import MonitoringHour, MonitoringRollup
from nimbus_api.monitoring.figures import Bounds, Counts, send_counts
from tests.alerts.conftest import World
from tests.conftest import Tenant

Sm = async_sessionmaker[AsyncSession]
OUTCOMES = [("transient", "smtp.connection_refused"), ("failed", "smtp.recipient_rejected"), ("unknown", None)]

_MESSAGES = text(
    """
    INSERT INTO messages (id, enrollment_id, workspace_id, campaign_id, contact_id, account_id, step, state, to_email,
                          subject, message_id_header, attempts, sent_at, created_at, updated_at)
    SELECT gen_random_uuid(), :enrollment_id, :workspace_id, :campaign_id, :contact_id, :account_id,
           :first_step + i, 'sent', 'p@example.org', 's', '<' || gen_random_uuid() || '@nimbus.test>', 1, t, t, t
    FROM unnest(CAST(:times AS timestamptz[])) WITH ORDINALITY AS x(t, i)
    """
)


async def _add(
    sm: Sm,
    ids: dict[str, uuid.UUID],
    first_step: int,
    sent: list[datetime],
    attempts: list[tuple[str, str | None, datetime]],
) -> None:
    async with sm() as session, session.begin():
        await session.execute(_MESSAGES, ids | {"first_step": first_step, "times": sent})
        message_id = await session.scalar(
            text("SELECT id FROM messages WHERE account_id = :a LIMIT 1"), {"a": ids["account_id"]}
        )
        for outcome, code, at in attempts:
            await session.execute(
                text(
                    "INSERT INTO send_attempts (id, message_id, account_id, outcome, error_code, started_at)"
                    " VALUES (gen_random_uuid(), :m, :a, :o, :c, :t)"
                ),
                {"m": message_id, "a": ids["account_id"], "o": outcome, "c": code, "t": at},
            )


async def _direct(sm: Sm, account_id: uuid.UUID, since: datetime) -> tuple[int, dict[str, int]]:
    async with sm() as session:
        accepted = await session.scalar(
            text("SELECT count(*) FROM messages WHERE account_id = :a AND sent_at >= :s"), {"a": account_id, "s": since}
        )
        rows = await session.execute(
            text("SELECT outcome, count(*) FROM send_attempts WHERE account_id = :a AND started_at >= :s GROUP BY 1"),
            {"a": account_id, "s": since},
        )
        return int(accepted or 0), {o: int(n) for o, n in rows.all()}


async def _read(sm: Sm, account_id: uuid.UUID, now: datetime) -> dict[str, Counts]:
    async with sm() as session, session.begin():
        return await send_counts(session, account_id, Bounds.at(now))


async def _check(sm: Sm, account_id: uuid.UUID, now: datetime, got: dict[str, Counts]) -> None:
    for window, since in (("24h", now - timedelta(hours=24)), ("7d", now - timedelta(days=7))):
        accepted, by_outcome = await _direct(sm, account_id, since)
        assert (got[window].accepted, got[window].not_accepted) == (accepted, by_outcome), window


async def test_the_rolled_up_figures_equal_the_rows_counted_directly(
    tenant: Tenant, world: World, sessionmaker: Sm
) -> None:
    ws = tenant.workspace_id
    account, _ = await world.inbox(ws)
    campaign_id, contact_id, enrollment_id = await world.enrollment(ws)
    ids = {
        "enrollment_id": enrollment_id,
        "workspace_id": ws,
        "campaign_id": campaign_id,
        "contact_id": contact_id,
        "account_id": account,
    }
    now = datetime.now(UTC)
    rng = random.Random(15)
    sent = [now - timedelta(seconds=rng.uniform(0, 8 * 86400)) for _ in range(600)]
    # rows right on the window edges and the hour boundaries count where they belong
    sent += [now - timedelta(days=7), now - timedelta(hours=24), now.replace(minute=0, second=0, microsecond=0)]
    attempts = [(*rng.choice(OUTCOMES), now - timedelta(seconds=rng.uniform(0, 8 * 86400))) for _ in range(150)]
    await _add(sessionmaker, ids, 0, sent, attempts)

    first = await _read(sessionmaker, account, now)
    await _check(sessionmaker, account, now, first)
    async with sessionmaker() as session:
        rolled = await session.scalar(select(func.sum(MonitoringHour.n)).where(MonitoringHour.account_id == account))
        through = await session.scalar(select(MonitoringRollup.through).where(MonitoringRollup.account_id == account))
    assert rolled and through == Bounds.at(now).cutoff  # the full hours come from the rollup now

    # New rows in the open hour (the tail) count at once; the read rolls nothing up again.
    later = now + timedelta(minutes=1)
    await _add(sessionmaker, ids, 1000, [now + timedelta(seconds=10)] * 3, [("failed", "smtp.rejected", now)])
    second = await _read(sessionmaker, account, later)
    await _check(sessionmaker, account, later, second)
    async with sessionmaker() as session:
        assert (
            await session.scalar(select(MonitoringRollup.through).where(MonitoringRollup.account_id == account))
            == through
        )

    # Two hours on: the window moved, the rollup catches up with the hours in between, the oldest are pruned.
    far = now + timedelta(hours=2, minutes=5)
    third = await _read(sessionmaker, account, far)
    await _check(sessionmaker, account, far, third)
    async with sessionmaker() as session:
        oldest = await session.scalar(select(func.min(MonitoringHour.hour)).where(MonitoringHour.account_id == account))
    assert oldest is not None and oldest >= Bounds.at(far).week_head_end

    # Two reads rolling up at once (an hour later still) insert each hour once and agree.
    both = now + timedelta(hours=3, minutes=20)
    a, b = await asyncio.gather(_read(sessionmaker, account, both), _read(sessionmaker, account, both))
    assert (a["7d"].accepted, a["7d"].not_accepted) == (b["7d"].accepted, b["7d"].not_accepted)
    await _check(sessionmaker, account, both, a)
