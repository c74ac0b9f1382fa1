"""A recompute brings the stages in line with the new scores in the same transaction (worker runs pass
the warmup thresholds; ``stages.apply_stages`` is the rule)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.health.tasks import run_requested
from nimbus_api.kit.db import utc_day, utcnow
from nimbus_api.models import AccountDailyUsage, AccountEvent, EmailAccount
from nimbus_api.stages.stages import Thresholds
from tests.health.conftest import quiet_fleet

Sm = async_sessionmaker[AsyncSession]


async def _state(sm: Sm, account_id: uuid.UUID) -> tuple[int, float]:
    async with sm() as session:
        row = (
            await session.execute(
                select(EmailAccount.current_stage, EmailAccount.overall_score).where(EmailAccount.id == account_id)
            )
        ).one()
    return int(row[0]), float(row[1])


async def _ask(sm: Sm, account_id: uuid.UUID, **values: object) -> None:
    async with sm() as session, session.begin():
        await session.execute(
            update(EmailAccount).where(EmailAccount.id == account_id).values(health_requested_at=utcnow(), **values)
        )


async def test_a_recompute_moves_the_stage_with_the_score(sessionmaker: Sm, workspace_id: uuid.UUID) -> None:
    (account_id,) = (await quiet_fleet(sessionmaker, workspace_id, 1)).account_ids
    # 250 warmup sends: enough for stage 3 once the score is at its floor (a new inbox scores 50)
    await _ask(sessionmaker, account_id, warmup_sent_total=250, current_stage=0, overall_score=10.0)
    await run_requested(sessionmaker, batch=10)  # no thresholds: scores only
    assert await _state(sessionmaker, account_id) == (0, 50.0)

    await _ask(sessionmaker, account_id, overall_score=10.0)
    await run_requested(sessionmaker, batch=10, stages=Thresholds())
    assert await _state(sessionmaker, account_id) == (3, 50.0)
    async with sessionmaker() as session:
        changes = list(
            await session.scalars(
                select(AccountEvent.detail).where(
                    AccountEvent.account_id == account_id, AccountEvent.kind == "stage_changed"
                )
            )
        )
    assert [(c["from"], c["to"]) for c in changes] == [(0, 3)]

    # a bounce rate over the warmup threshold (2 of today's 20 sends): the same recompute refreshes the
    # rate from the daily rows and demotes the inbox to 0
    async with sessionmaker() as session, session.begin():
        session.add(AccountDailyUsage(account_id=account_id, day=utc_day(utcnow()), sends=20, bounces=2))
    await _ask(sessionmaker, account_id)
    await run_requested(sessionmaker, batch=10, stages=Thresholds())
    assert (await _state(sessionmaker, account_id))[0] == 0
    async with sessionmaker() as session:
        assert await session.scalar(select(EmailAccount.bounce_rate_7d).where(EmailAccount.id == account_id)) == 10.0

    # a stale rate (its bounces' day has left the window) is brought back to what the rows say
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(AccountDailyUsage)
            .where(AccountDailyUsage.account_id == account_id)
            .values(day=utc_day(utcnow()) - timedelta(days=8))
        )
    await _ask(sessionmaker, account_id)
    await run_requested(sessionmaker, batch=10, stages=Thresholds())
    async with sessionmaker() as session:
        assert await session.scalar(select(EmailAccount.bounce_rate_7d).where(EmailAccount.id == account_id)) == 0.0
    assert (await _state(sessionmaker, account_id))[0] == 3
