"""The set-based stage update against the pure function: the same stage and progress for random
inboxes, one statement, events for the changes only, and the limit expression equal to Python's."""

from __future__ import annotations

import random
import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import AccountEvent, EmailAccount
from nimbus_api.stages.limits import effective_daily_limit, effective_limit_sql
from nimbus_api.stages.service import apply_stages
from nimbus_api.stages.stages import STAGES, Thresholds, get_inbox_stage, warmup_progress
from tests.stages.conftest import Inboxes

T = Thresholds(warmup_max_bounce_rate_7d=3.0, warmup_max_complaint_rate_7d=0.3)


def _near_threshold(rng: random.Random) -> tuple[int, float]:
    """Sends and score on, just under or just over a stage's thresholds, or anywhere."""
    stage = rng.choice(STAGES)
    sent = max(0, stage.min_warmup_sent + rng.choice([-1, 0, 0, 1, rng.randint(-50, 500)]))
    score = min(100.0, max(0.0, stage.min_overall_score + rng.choice([-0.01, 0.0, 0.0, 0.01, rng.uniform(-30, 30)])))
    return sent, score


async def test_sql_gives_the_pure_functions_answer_for_random_inboxes(inboxes: Inboxes) -> None:
    rng = random.Random(15)
    ids: list[uuid.UUID] = []
    for _ in range(300):
        sent, score = _near_threshold(rng)
        ids.append(
            await inboxes.add(
                warmup_sent_total=sent,
                overall_score=score,
                bounce_rate_7d=rng.choice([0.0, 2.99, 3.0, 3.0000001, rng.uniform(0, 8)]),
                complaint_rate_7d=rng.choice([0.0, 0.3, 0.30001, rng.uniform(0, 1)]),
                current_stage=rng.randint(0, 5),
                warmup_progress=rng.uniform(0, 100),
            )
        )
    async with inboxes.sessionmaker() as session, session.begin():
        changes = await apply_stages(session, ids, settings=T)
    async with inboxes.sessionmaker() as session:
        rows = list(await session.scalars(select(EmailAccount).where(EmailAccount.id.in_(ids))))
    assert len(rows) == 300
    for row in rows:
        assert row.current_stage == get_inbox_stage(row, T), row.id
        assert row.warmup_progress == warmup_progress(row.current_stage, row.warmup_sent_total), row.id
    assert set(range(6)) <= {row.current_stage for row in rows}  # every stage was exercised
    assert changes  # random starting stages: many moved
    async with inboxes.sessionmaker() as session, session.begin():
        assert await apply_stages(session, ids, settings=T) == []  # a second run changes nothing


async def test_only_stage_changes_are_recorded_by_the_platform(inboxes: Inboxes) -> None:
    promoted = await inboxes.add(warmup_sent_total=250, overall_score=66.0, current_stage=1)
    steady = await inboxes.add(warmup_sent_total=90, overall_score=50.0, current_stage=2)
    async with inboxes.sessionmaker() as session, session.begin():
        changes = await apply_stages(session, [promoted, steady], settings=T)
        events = list(
            await session.scalars(select(AccountEvent).where(AccountEvent.account_id.in_([promoted, steady])))
        )
    assert [(c.account_id, c.old, c.new) for c in changes] == [(promoted, 1, 3)]
    [event] = events
    assert (event.account_id, event.kind, event.actor) == (promoted, "stage_changed", "platform")
    assert event.detail["from"] == 1 and event.detail["to"] == 3
    assert event.detail["warmup_sent_total"] == 250 and event.detail["overall_score"] == 66.0
    assert (await inboxes.get(steady)).warmup_progress == warmup_progress(2, 90)  # progress kept current


async def test_the_limit_expression_in_sql_equals_the_python_one(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    pairs = [
        (ceiling, stage) for ceiling in (1, 4, 5, 6, 19, 20, 30, 40, 49, 50, 51, 100, 100_000) for stage in range(6)
    ]
    sql = text(
        "SELECT "
        + effective_limit_sql("a")
        + " FROM (SELECT CAST(:ceiling AS int) AS daily_send_limit, CAST(:stage AS int) AS current_stage) a"
    )
    async with sessionmaker() as session:
        for ceiling, stage in pairs:
            got = await session.scalar(sql, {"ceiling": ceiling, "stage": stage})
            assert got == effective_daily_limit(ceiling, stage), (ceiling, stage)
