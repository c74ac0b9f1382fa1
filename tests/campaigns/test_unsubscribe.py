"""The public unsubscribe link: RFC 8058 one-click POST, the page for people, idempotence, and a token that
reaches nothing outside its own workspace."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Enrollment
from tests.campaigns.conftest import create_campaign, create_contacts
from tests.conftest import Tenant, TenantFactory

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


async def _token(sessionmaker: async_sessionmaker[AsyncSession], campaign_id: str, contact_id: str) -> str:
    async with sessionmaker() as session:
        token = await session.scalar(
            select(Enrollment.unsubscribe_token).where(
                Enrollment.campaign_id == uuid.UUID(campaign_id), Enrollment.contact_id == uuid.UUID(contact_id)
            )
        )
    assert token
    return token


async def _enroll(tenant: Tenant, campaign_id: str, *contact_ids: str) -> None:
    r = await tenant.client.post(f"/v1/campaigns/{campaign_id}/enrollments", json={"contact_ids": list(contact_ids)})
    assert r.json()["enrolled"] == len(contact_ids), r.text


async def _statuses(tenant: Tenant, campaign_id: str) -> dict[str, tuple[str, str | None]]:
    data = (await tenant.client.get(f"/v1/campaigns/{campaign_id}/enrollments")).json()["data"]
    return {e["email"]: (e["status"], e["stop_reason"]) for e in data}


async def test_one_click_suppresses_and_stops_every_active_enrollment(
    tenant: Tenant, http: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first, second = await create_campaign(tenant, name="first"), await create_campaign(tenant, name="second")
    leaving, staying = await create_contacts(tenant, "Leaving@example.com", "staying@example.com")
    await _enroll(tenant, first["id"], leaving, staying)
    await _enroll(tenant, second["id"], leaving)
    token = await _token(sessionmaker, first["id"], leaving)

    # no API key: the link is public; the body is what RFC 8058 clients send (form-encoded)
    r = await http.post(f"/u/{token}", data=ONE_CLICK)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "unsubscribe" in r.text.lower() or "will not receive" in r.text

    suppressions = (await tenant.client.get("/v1/suppressions")).json()["data"]
    assert [(s["email"], s["reason"]) for s in suppressions] == [("Leaving@example.com", "unsubscribed")]
    assert (await _statuses(tenant, first["id"])) == {
        "Leaving@example.com": ("stopped", "unsubscribed"),
        "staying@example.com": ("active", None),
    }
    assert (await _statuses(tenant, second["id"])) == {"Leaving@example.com": ("stopped", "unsubscribed")}
    assert (await tenant.client.get(f"/v1/contacts/{leaving}")).json()["suppressed"] is True

    # idempotent: again (and a token of the other campaign for the same person) changes nothing
    again = await http.post(f"/u/{token}", data=ONE_CLICK)
    assert again.status_code == 200
    other_token = await _token(sessionmaker, second["id"], leaving)
    assert (await http.post(f"/u/{other_token}")).status_code == 200, "a body-less POST is accepted too"
    assert (await tenant.client.get("/v1/suppressions")).json()["data"] == suppressions
    # enrolling the person again is refused as suppressed
    third = await create_campaign(tenant, name="third")
    report = (
        await tenant.client.post(f"/v1/campaigns/{third['id']}/enrollments", json={"contact_ids": [leaving]})
    ).json()
    assert report["enrolled"] == 0 and report["suppressed"][0]["reason"] == "unsubscribed"


async def test_an_existing_suppression_keeps_its_reason(
    tenant: Tenant, http: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await create_campaign(tenant)
    (contact,) = await create_contacts(tenant, "bounced@example.com")
    await _enroll(tenant, campaign["id"], contact)
    token = await _token(sessionmaker, campaign["id"], contact)
    created = await tenant.client.post("/v1/suppressions", json={"email": "bounced@example.com", "detail": "by hand"})
    assert created.status_code == 201
    assert (await _statuses(tenant, campaign["id"]))["bounced@example.com"] == ("stopped", "manual")
    assert (await http.post(f"/u/{token}", data=ONE_CLICK)).status_code == 200
    rows = (await tenant.client.get("/v1/suppressions")).json()["data"]
    assert [(s["reason"], s["detail"]) for s in rows] == [("manual", "by hand")]


async def test_the_page_for_people_changes_nothing_until_the_button(
    tenant: Tenant, http: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await create_campaign(tenant)
    (contact,) = await create_contacts(tenant, "reader@example.com")
    await _enroll(tenant, campaign["id"], contact)
    token = await _token(sessionmaker, campaign["id"], contact)
    page = await http.get(f"/u/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post"' in page.text and 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "reader@example.com" not in page.text, "the page shows no personal data"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert (await _statuses(tenant, campaign["id"]))["reader@example.com"] == ("active", None)
    assert (await tenant.client.get("/v1/suppressions")).json()["data"] == []


async def test_unknown_tokens_and_wrong_bodies(http: httpx.AsyncClient) -> None:
    for method in ("GET", "POST"):
        r = await http.request(method, "/u/not-a-real-token", data=ONE_CLICK if method == "POST" else None)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "unsubscribe.not_found"
    r = await http.post("/u/not-a-real-token", data={"List-Unsubscribe": "Everything"})
    assert r.status_code == 422


async def test_a_token_only_reaches_its_own_workspace(
    make_tenant: TenantFactory, http: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The same address is a contact of two workspaces; A's token suppresses it in A only."""
    a, b = await make_tenant(), await make_tenant()
    campaign_a, campaign_b = await create_campaign(a), await create_campaign(b)
    (contact_a,) = await create_contacts(a, "both@example.com")
    (contact_b,) = await create_contacts(b, "both@example.com")
    await _enroll(a, campaign_a["id"], contact_a)
    await _enroll(b, campaign_b["id"], contact_b)
    token_a = await _token(sessionmaker, campaign_a["id"], contact_a)
    assert (await http.post(f"/u/{token_a}", data=ONE_CLICK)).status_code == 200
    assert (await _statuses(a, campaign_a["id"]))["both@example.com"][0] == "stopped"
    assert (await _statuses(b, campaign_b["id"]))["both@example.com"] == ("active", None)
    assert (await b.client.get("/v1/suppressions")).json()["data"] == []
    assert (await b.client.get(f"/v1/contacts/{contact_b}")).json()["suppressed"] is False
