"""A campaign that sends around the clock: ``00:00``-``24:00``, stored as start == end, inside its window
at every moment of its days, DST changes included, and dispatched at 23:59:30."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Campaign
from nimbus_api.sending.dispatcher import dispatch_campaign, in_window, next_window_start
from tests.campaigns.conftest import InboxFactory, create_campaign, create_contacts
from tests.conftest import Tenant

ALL_DAY = {"timezone": "America/New_York", "days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}
NEW_YORK = ZoneInfo("America/New_York")
# 2027-03-14: clocks go from 02:00 to 03:00 (a 23-hour day); 2027-11-07: from 02:00 back to 01:00 (25 hours).
SPRING_FORWARD, FALL_BACK = (2027, 3, 14), (2027, 11, 7)


def local(day: tuple[int, int, int], hour: int, minute: int = 0, second: int = 0, *, fold: int = 0) -> datetime:
    return datetime(*day, hour, minute, second, tzinfo=NEW_YORK, fold=fold).astimezone(UTC)


async def stored(sm: async_sessionmaker[AsyncSession], campaign_id: str) -> Campaign:
    async with sm() as session:
        return await session.get_one(Campaign, uuid.UUID(campaign_id))


async def test_all_day_round_trips_and_is_stored_as_start_equal_end(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await create_campaign(tenant, schedule=ALL_DAY)
    assert campaign["schedule"] == ALL_DAY
    row = await stored(sessionmaker, campaign["id"])
    assert (row.send_start, row.send_end) == (time(0), time(0))
    assert (await tenant.client.get(f"/v1/campaigns/{campaign['id']}")).json()["schedule"] == ALL_DAY

    # `00:00` as an end is the same midnight, answered as `24:00`: 00:00-00:00 is all day too, and an
    # evening window can end at either spelling of midnight.
    r = await tenant.client.patch(
        f"/v1/campaigns/{campaign['id']}", json={"schedule": {**ALL_DAY, "start": "00:00", "end": "00:00"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["schedule"] == ALL_DAY
    r = await tenant.client.patch(
        f"/v1/campaigns/{campaign['id']}", json={"schedule": {**ALL_DAY, "start": "18:30", "end": "00:00"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["schedule"]["end"] == "24:00"
    row = await stored(sessionmaker, campaign["id"])
    assert (row.send_start, row.send_end) == (time(18, 30), time(0))
    assert in_window(row, local(SPRING_FORWARD, 23, 59, 30)) and not in_window(row, local(SPRING_FORWARD, 18, 29))


@pytest.mark.parametrize(
    ("schedule", "needle"),
    [
        ({"start": "09:00", "end": "09:00"}, "use start 00:00 and end 24:00"),
        ({"start": "24:00", "end": "24:00"}, "String should match pattern"),
        ({"start": "00:00", "end": "24:01"}, "String should match pattern"),
        ({"start": "00:00", "end": "25:00"}, "String should match pattern"),
    ],
)
async def test_refused_windows(tenant: Tenant, schedule: dict[str, str], needle: str) -> None:
    r = await tenant.client.post("/v1/campaigns", json={"name": "x", "type": "cold", "schedule": schedule})
    assert r.status_code == 422, r.text
    assert any(needle in e["message"] for e in r.json()["errors"]), r.json()
    assert (await tenant.client.get("/v1/campaigns")).json()["data"] == []


async def test_inside_its_window_at_every_hour_including_across_dst(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await stored(sessionmaker, (await create_campaign(tenant, schedule=ALL_DAY))["id"])
    for day in (SPRING_FORWARD, FALL_BACK, (2027, 7, 1)):
        for moment in (local(day, 0), local(day, 12), local(day, 23, 59, 30), local(day, 3, 0)):
            assert in_window(campaign, moment), moment
    # The hour that happens twice when the clocks go back, both times; the skipped hour's neighbours.
    assert in_window(campaign, local(FALL_BACK, 1, 30, fold=0))
    assert in_window(campaign, local(FALL_BACK, 1, 30, fold=1))
    assert local(FALL_BACK, 1, 30, fold=1) - local(FALL_BACK, 1, 30, fold=0) == timedelta(hours=1)
    assert in_window(campaign, local(SPRING_FORWARD, 1, 59, 59)) and in_window(campaign, local(SPRING_FORWARD, 3))
    # Every minute of both DST days, in UTC steps (23 and 25 hours long): never outside.
    for day in (SPRING_FORWARD, FALL_BACK):
        start, end = local(day, 0), local((day[0], day[1], day[2] + 1), 0)
        minutes = int((end - start).total_seconds() // 60)
        assert minutes in (23 * 60, 25 * 60)
        assert all(in_window(campaign, start + timedelta(minutes=m)) for m in range(minutes))


async def test_all_day_on_some_days_only(tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    sundays = {**ALL_DAY, "days": [6]}
    campaign = await stored(sessionmaker, (await create_campaign(tenant, schedule=sundays))["id"])
    assert in_window(campaign, local(SPRING_FORWARD, 0)) and in_window(campaign, local(SPRING_FORWARD, 23, 59, 30))
    monday = (2027, 3, 15)
    assert not in_window(campaign, local(monday, 0)) and not in_window(campaign, local(monday, 12))
    # The window opens again at the next Sunday's local midnight.
    assert next_window_start(campaign, local(monday, 12)) == local((2027, 3, 21), 0)


async def test_an_all_day_campaign_dispatches_at_23_59_30_local(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], make_inbox: InboxFactory
) -> None:
    inbox = await make_inbox(tenant)
    results = {}
    for name, schedule in (("all day", ALL_DAY), ("office hours", {**ALL_DAY, "start": "09:00", "end": "17:00"})):
        campaign = await create_campaign(tenant, name=name, schedule=schedule)
        url = f"/v1/campaigns/{campaign['id']}"
        assert (await tenant.client.post(f"{url}/accounts", json={"account_ids": [inbox]})).status_code == 200
        contacts = await create_contacts(tenant, f"{uuid.uuid4().hex[:8]}@example.com")
        assert (await tenant.client.post(f"{url}/enrollments", json={"contact_ids": contacts})).status_code == 200
        assert (await tenant.client.post(f"{url}/start")).status_code == 200
        async with sessionmaker() as session, session.begin():
            row = await session.get_one(Campaign, uuid.UUID(campaign["id"]))
            results[name] = await dispatch_campaign(
                session, row, now=local(FALL_BACK, 23, 59, 30), public_url="https://nimbus.example", mx=None
            )
    assert (sum(results["all day"].queued.values()), results["all day"].skipped_reason) == (1, None)
    assert results["office hours"].skipped_reason == "outside the sending window"
