"""The daily snapshot upsert (``health.snapshots``): one row per inbox and UTC day, written set-based, left
alone when nothing changed, updated in place when the day's scores move."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from nimbus_api.health.recompute import recompute
from nimbus_api.health.snapshots import snapshot
from nimbus_api.kit.db import utc_day
from nimbus_api.models import AccountHealthDaily, Domain
from tests.health.conftest import Sm, quiet_fleet


async def _rows(sm: Sm, ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    async with sm() as session:
        result = await session.execute(
            select(
                AccountHealthDaily.account_id,
                AccountHealthDaily.day,
                AccountHealthDaily.overall_score,
                AccountHealthDaily.band,
                AccountHealthDaily.components,
            )
            .where(AccountHealthDaily.account_id.in_(ids))
            .order_by(AccountHealthDaily.account_id, AccountHealthDaily.day)
        )
        return [tuple(r) for r in result]


async def test_one_row_per_inbox_and_day_written_only_when_it_changes(
    sessionmaker: Sm, workspace_id: uuid.UUID
) -> None:
    fleet = await quiet_fleet(sessionmaker, workspace_id, 3)
    ids = fleet.account_ids
    async with sessionmaker() as session, session.begin():
        assert await snapshot(session, ids) == 0  # never computed: nothing to keep yet
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await recompute(session, ids, now)
        assert await snapshot(session, ids) == 3
    first = await _rows(sessionmaker, ids)
    assert [(r[1], r[2], r[3]) for r in first] == [(utc_day(now), 50.0, "watch")] * 3
    assert all(set(r[4]) >= {"bounce_rate", "dns"} for r in first)
    async with sessionmaker() as session, session.begin():
        await recompute(session, ids, now + timedelta(seconds=1))
        assert await snapshot(session, ids) == 0  # the same scores: no write
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Domain).where(Domain.workspace_id == workspace_id).values(blocklist_status="listed")
        )
        await recompute(session, ids, now + timedelta(seconds=2))
        assert await snapshot(session, ids) == 3
    after = await _rows(sessionmaker, ids)
    assert len(after) == 3  # updated in place, still one row per inbox and day
    assert {(r[2], r[3]) for r in after} == {(42.5, "blocked")}


async def test_another_day_gets_its_own_row(sessionmaker: Sm, workspace_id: uuid.UUID) -> None:
    [account_id] = (await quiet_fleet(sessionmaker, workspace_id, 1)).account_ids
    now = datetime.now(UTC)
    for moment in (now - timedelta(days=1), now):
        async with sessionmaker() as session, session.begin():
            await recompute(session, [account_id], moment)
            await snapshot(session, [account_id])
    assert [r[1] for r in await _rows(sessionmaker, [account_id])] == [utc_day(now) - timedelta(days=1), utc_day(now)]
