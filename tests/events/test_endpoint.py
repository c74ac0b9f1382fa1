"""GET /v1/events: a workspace sees its own events only, newest first, by page, filtered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api import events
from nimbus_api.events.catalogue import CampaignPausedData, ContactSuppressedData
from tests.conftest import Tenant, TenantFactory


async def _emit(sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID, count: int) -> list[str]:
    """``count`` events, each committed on its own (as separate changes are); their ids in the order the
    API lists them (newest first: by id, which orders by the millisecond, randomly within one)."""
    ids = []
    for i in range(count):
        async with sm() as session, session.begin():
            data = CampaignPausedData(campaign_id=uuid.uuid4(), name=f"c{i}", reason="manual")
            ids.append(events.emit(session, workspace_id, "campaign.paused", data).id)
    return [str(i) for i in sorted(ids, reverse=True)]


async def test_a_workspace_never_sees_another_ones_events(
    make_tenant: TenantFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    a, b = await make_tenant(), await make_tenant()
    mine = await _emit(sessionmaker, a.workspace_id, 2)
    theirs = await _emit(sessionmaker, b.workspace_id, 3)
    seen_a = [e["id"] for e in (await a.client.get("/v1/events")).json()["data"]]
    seen_b = [e["id"] for e in (await b.client.get("/v1/events")).json()["data"]]
    assert seen_a == mine and seen_b == theirs
    # B's cursor (a position in the id order) pages through A's events only, for A
    cursor = (await b.client.get("/v1/events", params={"limit": 1})).json()["next_cursor"]
    page = (await a.client.get("/v1/events", params={"cursor": cursor})).json()["data"]
    assert {e["id"] for e in page} <= set(mine)


async def test_pages_newest_first_and_filters_by_type_and_time(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _emit(sessionmaker, tenant.workspace_id, 5)
    async with sessionmaker() as session, session.begin():
        data = ContactSuppressedData(suppression_id=uuid.uuid4(), email="a@example.org", reason="manual")
        suppressed = events.emit(session, tenant.workspace_id, "contact.suppressed", data)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "type": "campaign.paused"}
        if cursor:
            params["cursor"] = cursor
        body = (await tenant.client.get("/v1/events", params=params)).json()
        seen += [e["id"] for e in body["data"]]
        assert all(e["type"] == "campaign.paused" for e in body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    (only,) = (await tenant.client.get("/v1/events", params={"type": "contact.suppressed"})).json()["data"]
    assert only["id"] == str(suppressed.id)
    assert only["payload"] == suppressed.payload and only["payload"]["data"]["email"] == "a@example.org"
    assert set(only) == {"id", "type", "created_at", "payload", "deliveries"} and only["deliveries"] == []

    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    assert (await tenant.client.get("/v1/events", params={"since": later})).json()["data"] == []
    earlier = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert len((await tenant.client.get("/v1/events", params={"since": earlier})).json()["data"]) == 6

    for bad in ({"type": "campaign.exploded"}, {"since": "12"}, {"limit": 0}, {"cursor": "x"}):
        r = await tenant.client.get("/v1/events", params=bad)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", (bad, r.text)
