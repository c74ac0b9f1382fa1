"""Enrolling contacts: nothing dropped silently (unknown, foreign and suppressed ids are reported), contacts
enrolled before are skipped and counted; listing and stopping enrollments."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.kit.db import utcnow
from nimbus_api.models import Campaign, Enrollment
from tests.campaigns.conftest import create_campaign, create_contacts
from tests.conftest import Tenant, TenantFactory


async def test_enroll_reports_unknown_foreign_suppressed_and_repeated(
    make_tenant: TenantFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    a, b = await make_tenant(), await make_tenant()
    campaign = await create_campaign(a)
    url = f"/v1/campaigns/{campaign['id']}/enrollments"
    ann, ben, cat = await create_contacts(a, "ann@example.com", "ben@example.com", "cat@example.com")
    (foreign,) = await create_contacts(b, "ann@example.com")
    await a.client.post("/v1/suppressions", json={"email": "CAT@example.com"})
    unknown = str(uuid.uuid4())

    before = utcnow()
    r = await a.client.post(url, json={"contact_ids": [ann, ben, cat, foreign, unknown, ann]})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["enrolled"] == 2
    assert report["already_enrolled"] == 0
    assert report["not_found"] == [foreign, unknown]
    assert report["suppressed"] == [{"contact_id": cat, "email": "cat@example.com", "reason": "manual"}]

    again = (await a.client.post(url, json={"contact_ids": [ben, ann]})).json()
    assert (again["enrolled"], again["already_enrolled"], again["not_found"], again["suppressed"]) == (0, 2, [], [])

    async with sessionmaker() as session:
        rows = list(
            await session.scalars(select(Enrollment).where(Enrollment.campaign_id == uuid.UUID(campaign["id"])))
        )
    assert {str(e.contact_id) for e in rows} == {ann, ben}
    for enrollment in rows:
        assert (enrollment.status, enrollment.next_step) == ("active", 0)
        assert enrollment.next_send_at is not None and enrollment.next_send_at >= before
        assert enrollment.workspace_id == a.workspace_id
        assert len(enrollment.unsubscribe_token) >= 32
    assert len({e.unsubscribe_token for e in rows}) == 2
    # B's contact was not enrolled anywhere, and B's campaign list is untouched
    assert (await b.client.get("/v1/campaigns")).json()["data"] == []


async def test_enroll_many_at_once(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/contacts/import", json={"contacts": [{"email": f"m{i}@example.com"} for i in range(2_000)]}
    )
    assert r.json()["created"] == 2_000
    ids: list[str] = []
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await tenant.client.get("/v1/contacts", params=params)).json()
        ids += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    campaign = await create_campaign(tenant)
    report = (await tenant.client.post(f"/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": ids})).json()
    assert report["enrolled"] == 2_000
    stats = (await tenant.client.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert stats["enrollments"]["active"] == 2_000
    too_many = [str(uuid.uuid4()) for _ in range(10_001)]
    r = await tenant.client.post(f"/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": too_many})
    assert r.status_code == 422


async def test_list_filter_and_stop(tenant: Tenant) -> None:
    campaign = await create_campaign(tenant)
    url = f"/v1/campaigns/{campaign['id']}/enrollments"
    contacts = await create_contacts(tenant, "a@example.com", "b@example.com", "c@example.com")
    await tenant.client.post(url, json={"contact_ids": contacts})
    listed = (await tenant.client.get(url)).json()
    assert len(listed["data"]) == 3 and listed["next_cursor"] is None
    first = listed["data"][0]
    assert first["status"] == "active" and first["email"] in {"a@example.com", "b@example.com", "c@example.com"}
    assert "unsubscribe_token" not in first

    r = await tenant.client.delete(f"{url}/{first['id']}")
    assert r.status_code == 200, r.text
    stopped = r.json()
    assert (stopped["status"], stopped["stop_reason"], stopped["next_send_at"]) == (
        "stopped",
        "stopped by a person",
        None,
    )
    assert (await tenant.client.delete(f"{url}/{first['id']}")).json() == stopped, "stopping twice changes nothing"
    assert [e["id"] for e in (await tenant.client.get(url, params={"status": "stopped"})).json()["data"]] == [
        first["id"]
    ]
    assert len((await tenant.client.get(url, params={"status": "active"})).json()["data"]) == 2
    page = (await tenant.client.get(url, params={"limit": 2})).json()
    rest = (await tenant.client.get(url, params={"limit": 2, "cursor": page["next_cursor"]})).json()
    assert len(page["data"]) == 2 and len(rest["data"]) == 1

    missing = await tenant.client.delete(f"{url}/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["code"] == "enrollment.not_found"
    # an enrollment is addressed through its own campaign only
    other = await create_campaign(tenant, name="other")
    r = await tenant.client.delete(f"/v1/campaigns/{other['id']}/enrollments/{first['id']}")
    assert r.status_code == 404 and r.json()["code"] == "enrollment.not_found"


async def test_a_completed_campaign_takes_no_contacts(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await create_campaign(tenant)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Campaign).where(Campaign.id == uuid.UUID(campaign["id"])).values(status="completed")
        )
    (contact,) = await create_contacts(tenant, "late@example.com")
    r = await tenant.client.post(f"/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": [contact]})
    assert r.status_code == 409 and r.json()["code"] == "campaign.completed"


async def test_unknown_campaign(tenant: Tenant) -> None:
    (contact,) = await create_contacts(tenant, "x@example.com")
    r = await tenant.client.post(f"/v1/campaigns/{uuid.uuid4()}/enrollments", json={"contact_ids": [contact]})
    assert r.status_code == 404 and r.json()["code"] == "campaign.not_found"
