"""The set-based recompute (``health.recompute``) against the pure function, its band-change events
(exactly one per change, also under concurrent recomputes), the recompute requests and the batch runner."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text, update

from nimbus_api.health import requests, score
from nimbus_api.health.recompute import recompute
from nimbus_api.health.tasks import run_all, run_requested
from nimbus_api.models import AccountHealthDaily, Domain, EmailAccount
from tests.health.conftest import Sm, health_events, quiet_fleet
from tests.health.fleet import load_inputs, seed_fleet

TOLERANCE = 1e-6


def _same_value(stored: Any, expected: float | str | None) -> bool:
    if expected is None or isinstance(expected, str):
        return bool(stored == expected)
    return stored is not None and abs(stored - expected) <= TOLERANCE


async def test_the_sql_recompute_equals_the_pure_function_for_1000_random_inboxes(
    sessionmaker: Sm, workspace_id: uuid.UUID
) -> None:
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        fleet = await seed_fleet(
            session, workspace_id, inboxes=1000, messages=40_000, attempts=6_000, inbound=8_000, now=now
        )
    async with sessionmaker() as session, session.begin():
        await recompute(session, fleet.account_ids, now)
    async with sessionmaker() as session:
        inputs = await load_inputs(session, fleet.account_ids, now)
        rows = (
            await session.execute(
                select(
                    EmailAccount.id,
                    EmailAccount.overall_score,
                    EmailAccount.reputation_score,
                    EmailAccount.health_band,
                    EmailAccount.health_components,
                    EmailAccount.health_computed_at,
                ).where(EmailAccount.id.in_(fleet.account_ids))
            )
        ).all()
    assert len(rows) == len(inputs) == 1000
    bands: set[str] = set()
    below_sample = above_sample = 0
    for row in rows:
        expected = score.compute(inputs[row.id])
        assert abs(row.overall_score - expected.overall) <= TOLERANCE, (row.id, inputs[row.id])
        assert abs(row.reputation_score - expected.reputation) <= TOLERANCE, (row.id, inputs[row.id])
        assert row.health_band == expected.band
        assert row.health_computed_at == now
        assert set(row.health_components) == {c.key for c in score.COMPONENTS}
        for scored in expected.components:
            stored = row.health_components[scored.key]
            assert abs(stored["score"] - scored.score) <= TOLERANCE, (scored, stored)
            assert _same_value(stored["value"], scored.value), (scored, stored)
            assert stored["data"] | score.static_data(score.BY_KEY[scored.key]) == scored.data, (scored, stored)
        bands.add(expected.band)
        bounce = inputs[row.id].sends
        below_sample += bounce < score.BY_KEY["bounce_rate"].min_sample
        above_sample += bounce >= score.BY_KEY["bounce_rate"].min_sample
    # the fleet met the formula's branches: several bands, rates below and above their sample
    assert len(bands) >= 3, bands
    assert below_sample >= 50 and above_sample >= 500


async def test_a_new_inbox_scores_exactly_50_and_is_watched_with_no_event(
    sessionmaker: Sm, workspace_id: uuid.UUID
) -> None:
    fleet = await quiet_fleet(sessionmaker, workspace_id, 3)
    async with sessionmaker() as session, session.begin():
        changes = await recompute(session, fleet.account_ids, datetime.now(UTC))
    assert changes == []
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(EmailAccount.overall_score, EmailAccount.reputation_score, EmailAccount.health_band).where(
                    EmailAccount.id.in_(fleet.account_ids)
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [(50.0, 50.0, "watch")] * 3
    assert await health_events(sessionmaker, workspace_id) == []


async def _set_blocklist(sm: Sm, workspace_id: uuid.UUID, status: str) -> None:
    async with sm() as session, session.begin():
        await session.execute(update(Domain).where(Domain.workspace_id == workspace_id).values(blocklist_status=status))


async def test_a_band_change_emits_one_event_and_a_recompute_without_change_none(
    sessionmaker: Sm, workspace_id: uuid.UUID
) -> None:
    fleet = await quiet_fleet(sessionmaker, workspace_id, 1)
    [account_id] = fleet.account_ids
    await _set_blocklist(sessionmaker, workspace_id, "listed")
    for _ in range(2):
        async with sessionmaker() as session, session.begin():
            await recompute(session, [account_id], datetime.now(UTC))
    [event] = await health_events(sessionmaker, workspace_id)
    data = event.payload["data"]
    assert data["account_id"] == str(account_id)
    assert (data["previous_band"], data["band"]) == ("watch", "blocked")
    assert data["previous_score"] == 50.0
    assert data["score"] == pytest.approx(50.0 - 50.0 * 15 / 100)  # the blocklist component: 50 -> 0
    assert data["reputation_score"] == pytest.approx(50.0 - 50.0 * 15 / 60)
    await _set_blocklist(sessionmaker, workspace_id, "clean")
    async with sessionmaker() as session, session.begin():
        await recompute(session, [account_id], datetime.now(UTC))
    found = await health_events(sessionmaker, workspace_id)
    assert [(e.payload["data"]["previous_band"], e.payload["data"]["band"]) for e in found] == [
        ("watch", "blocked"),
        ("blocked", "watch"),
    ]


async def test_two_concurrent_recomputes_of_a_change_emit_one_event(sessionmaker: Sm, workspace_id: uuid.UUID) -> None:
    fleet = await quiet_fleet(sessionmaker, workspace_id, 20)
    await _set_blocklist(sessionmaker, workspace_id, "listed")
    now = datetime.now(UTC)
    # The first holds its rows (not committed yet) while the second starts and waits on them.
    first = sessionmaker()
    await first.begin()
    assert len(await recompute(first, fleet.account_ids, now)) == 20

    async def second() -> int:
        async with sessionmaker() as session, session.begin():
            return len(await recompute(session, list(reversed(fleet.account_ids)), now))

    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    assert not waiting.done()  # blocked on the first one's row locks
    await first.commit()
    await first.close()
    assert await waiting == 0
    assert len(await health_events(sessionmaker, workspace_id)) == 20
    # and racing freely, a change back emits one event per inbox too
    await _set_blocklist(sessionmaker, workspace_id, "clean")

    async def race() -> int:
        async with sessionmaker() as session, session.begin():
            return len(await recompute(session, fleet.account_ids, datetime.now(UTC)))

    counts = await asyncio.gather(*(race() for _ in range(4)))
    assert sum(counts) == 20
    assert len(await health_events(sessionmaker, workspace_id)) == 40


async def test_a_request_is_recomputed_by_the_next_run_and_a_rolled_back_one_does_not_exist(
    sessionmaker: Sm, workspace_id: uuid.UUID
) -> None:
    fleet = await quiet_fleet(sessionmaker, workspace_id, 2)
    kept, dropped = fleet.account_ids
    async with sessionmaker() as session, session.begin():
        await requests.request(session, [kept])
    async with sessionmaker() as session:
        await session.begin()
        await requests.request(session, [dropped])
        await session.rollback()

    async def state(account_id: uuid.UUID) -> tuple[datetime | None, datetime | None]:
        async with sessionmaker() as session:
            row = (
                await session.execute(
                    select(EmailAccount.health_requested_at, EmailAccount.health_computed_at).where(
                        EmailAccount.id == account_id
                    )
                )
            ).one()
            return row[0], row[1]

    assert (await state(kept))[0] is not None
    assert await state(dropped) == (None, None)
    run = await run_requested(sessionmaker, batch=1000)
    assert run.inboxes >= 1
    requested, computed = await state(kept)
    assert requested is None and computed is not None
    assert await state(dropped) == (None, None)


async def test_a_request_committed_during_a_recompute_stays_for_the_next_run(
    sessionmaker: Sm, workspace_id: uuid.UUID
) -> None:
    fleet = await quiet_fleet(sessionmaker, workspace_id, 1)
    [account_id] = fleet.account_ids
    marker = sessionmaker()
    await marker.begin()
    await requests.request(marker, [account_id])  # holds the row until it commits

    async def recompute_now() -> None:
        async with sessionmaker() as session, session.begin():
            await recompute(session, [account_id], datetime.now(UTC))

    running = asyncio.create_task(recompute_now())
    await asyncio.sleep(0.3)  # the recompute's snapshot saw no request; it waits for the row
    await marker.commit()
    await marker.close()
    await running
    async with sessionmaker() as session:
        requested = await session.scalar(select(EmailAccount.health_requested_at).where(EmailAccount.id == account_id))
    assert requested is not None  # not cleared: its bounce was not in that recompute


async def test_the_full_run_goes_through_every_inbox_in_batches_with_snapshots(
    sessionmaker: Sm, workspace_id: uuid.UUID
) -> None:
    fleet = await quiet_fleet(sessionmaker, workspace_id, 5)
    run = await run_all(sessionmaker, batch=2)
    assert run.batches >= 3 and run.inboxes >= 5
    async with sessionmaker() as session:
        computed = await session.scalar(
            select(text("count(*)"))
            .select_from(EmailAccount)
            .where(EmailAccount.id.in_(fleet.account_ids), EmailAccount.health_computed_at.is_not(None))
        )
        days = list(
            await session.scalars(
                select(AccountHealthDaily.band).where(AccountHealthDaily.account_id.in_(fleet.account_ids))
            )
        )
    assert computed == 5
    assert days == ["watch"] * 5
