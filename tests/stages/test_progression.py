"""An inbox through warmup: promoted as warmup sends add up with healthy indicators, demoted when its
score falls, held at 0 while paused (no graduation however many sends), back when the rate recovers.
Also the periodic task over every inbox."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from nimbus_api.models import AccountEvent, EmailAccount
from nimbus_api.stages.service import apply_stages
from nimbus_api.stages.stages import Thresholds
from tests.stages.conftest import Inboxes

T = Thresholds(warmup_max_bounce_rate_7d=3.0, warmup_max_complaint_rate_7d=0.3)


async def _set_and_apply(inboxes: Inboxes, account_id: uuid.UUID, **values: Any) -> int:
    async with inboxes.sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id == account_id).values(**values))
        await apply_stages(session, [account_id], settings=T)
    return (await inboxes.get(account_id)).current_stage


async def test_an_inbox_climbs_falls_pauses_and_resumes(inboxes: Inboxes) -> None:
    inbox = await inboxes.add(overall_score=50.0)
    journey = [
        ({"warmup_sent_total": 10}, 0),
        ({"warmup_sent_total": 20}, 1),
        ({"warmup_sent_total": 120}, 2),
        ({"warmup_sent_total": 260}, 3),  # cold outreach from here
        ({"warmup_sent_total": 450}, 3),  # sends enough for 4, but the score (50) is under 60
        ({"overall_score": 65.0}, 4),
        ({"overall_score": 44.0}, 1),  # the score fell: demoted to the highest stage it still meets
        ({"overall_score": 75.0, "warmup_sent_total": 650}, 4),
        ({"bounce_rate_7d": 4.2}, 0),  # paused: out of every campaign
        ({"warmup_sent_total": 5000}, 0),  # no graduation while paused, whatever the sends
        ({"bounce_rate_7d": 1.0}, 5),  # the rate is back under its threshold: the stage its sends earned
        ({"complaint_rate_7d": 0.5}, 0),
        ({"complaint_rate_7d": 0.0}, 5),
    ]
    for values, stage in journey:
        assert await _set_and_apply(inboxes, inbox, **values) == stage, values
    async with inboxes.sessionmaker() as session:
        events = list(
            await session.scalars(
                select(AccountEvent).where(AccountEvent.account_id == inbox).order_by(AccountEvent.id)
            )
        )
    moves = [(e.detail["from"], e.detail["to"]) for e in events]
    assert moves == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 1), (1, 4), (4, 0), (0, 5), (5, 0), (0, 5)]
    assert {(e.kind, e.actor) for e in events} == {("stage_changed", "platform")}
    assert (await inboxes.get(inbox)).warmup_progress == 100.0


async def test_an_override_holds_against_the_table(inboxes: Inboxes) -> None:
    pinned = await inboxes.add(current_stage=4, stage_override=4, warmup_sent_total=0, overall_score=50.0)
    assert await _set_and_apply(inboxes, pinned, bounce_rate_7d=9.0) == 4
    row = await inboxes.get(pinned)
    assert row.warmup_progress == 80.0  # progress follows the stage in force


async def test_the_whole_fleet_without_ids(inboxes: Inboxes) -> None:
    a = await inboxes.add(warmup_sent_total=900, overall_score=90.0)
    b = await inboxes.add(warmup_sent_total=90, overall_score=90.0)
    async with inboxes.sessionmaker() as session, session.begin():
        changes = await apply_stages(session, None, settings=T)
    assert {(c.account_id, c.new) for c in changes} >= {(a, 5), (b, 2)}
    assert [(await inboxes.get(x)).current_stage for x in (a, b)] == [5, 2]
