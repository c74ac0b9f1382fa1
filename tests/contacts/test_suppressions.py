"""The suppression list: add (manual), list with filters, remove; adding stops active enrollments."""

from __future__ import annotations

import uuid

from tests.campaigns.conftest import create_campaign, create_contacts
from tests.conftest import Tenant, TenantFactory


async def test_add_list_filter_remove(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/suppressions", json={"email": "Nope@Example.com", "detail": "asked by phone"})
    assert r.status_code == 201, r.text
    row = r.json()
    assert (row["email"], row["reason"], row["detail"]) == ("Nope@example.com", "manual", "asked by phone")
    dup = await tenant.client.post("/v1/suppressions", json={"email": "nope@example.com"})
    assert dup.status_code == 409 and dup.json()["code"] == "suppression.exists"
    await tenant.client.post("/v1/suppressions", json={"email": "two@example.com"})
    listed = (await tenant.client.get("/v1/suppressions")).json()["data"]
    assert [s["email"] for s in listed] == ["two@example.com", "Nope@example.com"]
    assert (await tenant.client.get("/v1/suppressions", params={"reason": "unsubscribed"})).json()["data"] == []
    assert len((await tenant.client.get("/v1/suppressions", params={"reason": "manual"})).json()["data"]) == 2
    by_email = (await tenant.client.get("/v1/suppressions", params={"email": "NOPE@example.com"})).json()["data"]
    assert [s["id"] for s in by_email] == [row["id"]]
    r = await tenant.client.get("/v1/suppressions", params={"reason": "bored"})
    assert r.status_code == 422

    assert (await tenant.client.delete(f"/v1/suppressions/{row['id']}")).status_code == 204
    gone = await tenant.client.delete(f"/v1/suppressions/{row['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "suppression.not_found"
    for bad in (
        {"email": "x@example.com\r\nBcc: y@example.com"},
        {"email": "x"},
        {"email": "x@example.com", "reason": "hard_bounce"},
    ):
        assert (await tenant.client.post("/v1/suppressions", json=bad)).status_code == 422


async def test_suppressing_stops_active_enrollments_of_that_address(tenant: Tenant) -> None:
    campaign = await create_campaign(tenant)
    stop, keep = await create_contacts(tenant, "stop@example.com", "keep@example.com")
    await tenant.client.post(f"/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": [stop, keep]})
    await tenant.client.post("/v1/suppressions", json={"email": "STOP@example.com"})
    data = (await tenant.client.get(f"/v1/campaigns/{campaign['id']}/enrollments")).json()["data"]
    assert {e["email"]: (e["status"], e["stop_reason"]) for e in data} == {
        "stop@example.com": ("stopped", "manual"),
        "keep@example.com": ("active", None),
    }


async def test_suppression_lists_are_per_workspace(make_tenant: TenantFactory) -> None:
    a, b = await make_tenant(), await make_tenant()
    row = (await a.client.post("/v1/suppressions", json={"email": "shared@example.com"})).json()
    assert (await b.client.get("/v1/suppressions")).json()["data"] == []
    assert (await b.client.post("/v1/suppressions", json={"email": "shared@example.com"})).status_code == 201
    assert (await b.client.delete(f"/v1/suppressions/{row['id']}")).status_code == 404
    assert (await b.client.delete(f"/v1/suppressions/{uuid.uuid4()}")).status_code == 404
    assert len((await a.client.get("/v1/suppressions")).json()["data"]) == 1
