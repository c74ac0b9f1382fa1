"""Contacts over HTTP: create, read, list, update (custom fields merge), delete, and refused input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Tenant


def fields_of(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [e["field"] for e in response.json()["errors"]]


async def test_create_normalizes_and_reads_back(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/contacts",
        json={
            "email": "  Ada@EXAMPLE.com ",
            "first_name": "Ada",
            "last_name": "",
            "company": "Analytical Engines",
            "fields": {"city": "London", "plan_tier": "gold"},
        },
    )
    assert r.status_code == 201, r.text
    contact = r.json()
    assert contact["email"] == "Ada@example.com"
    assert contact["last_name"] is None, "an empty name counts as not given"
    assert contact["fields"] == {"city": "London", "plan_tier": "gold"}
    assert contact["suppressed"] is False
    assert (await tenant.client.get(f"/v1/contacts/{contact['id']}")).json() == contact
    found = (await tenant.client.get("/v1/contacts", params={"email": "ADA@example.COM"})).json()["data"]
    assert [c["id"] for c in found] == [contact["id"]]


async def test_the_same_address_in_any_case_is_one_contact(tenant: Tenant) -> None:
    assert (await tenant.client.post("/v1/contacts", json={"email": "bob@example.com"})).status_code == 201
    r = await tenant.client.post("/v1/contacts", json={"email": "BOB@example.com"})
    assert r.status_code == 409 and r.json()["code"] == "contact.exists"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@example.com\r\nBcc: x@example.com"}, "email"),
        ({"email": "a@example.com", "first_name": "Eve\r\nBcc: victim@example.com"}, "first_name"),
        ({"email": "a@example.com", "last_name": "x\ny"}, "last_name"),
        ({"email": "a@example.com", "company": "x\x00y"}, "company"),
        ({"email": "a@example.com", "company": "x" * 201}, "company"),
        ({"email": "a@example.com", "fields": {"City": "x"}}, "fields.City.[key]"),
        ({"email": "a@example.com", "fields": {"1st": "x"}}, "fields.1st.[key]"),
        ({"email": "a@example.com", "fields": {"x" * 65: "x"}}, "fields." + "x" * 65 + ".[key]"),
        ({"email": "a@example.com", "fields": {"note": "a\r\nb"}}, "fields.note"),
        ({"email": "a@example.com", "fields": {"note": "x" * 1001}}, "fields.note"),
        ({"email": "a@example.com", "fields": {"n": 5}}, "fields.n"),
        ({"email": "a@example.com", "fields": {f"f{i}": "x" for i in range(51)}}, "fields"),
        ({"email": "a@example.com", "phone": "123"}, "phone"),
    ],
)
async def test_invalid_input_is_a_422_naming_the_field(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    assert field in fields_of(await tenant.client.post("/v1/contacts", json=body))
    assert (await tenant.client.get("/v1/contacts")).json()["data"] == []


async def test_patch_merges_custom_fields_and_clears_names(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/contacts",
        json={"email": "c@example.com", "first_name": "Cy", "company": "Old", "fields": {"a": "1", "b": "2"}},
    )
    url = f"/v1/contacts/{r.json()['id']}"
    r = await tenant.client.patch(url, json={"company": None, "fields": {"b": None, "c": "3"}})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["first_name"] == "Cy" and patched["company"] is None
    assert patched["fields"] == {"a": "1", "c": "3"}
    r = await tenant.client.patch(url, json={"email": "C.New@Example.com"})
    assert r.json()["email"] == "C.New@example.com"
    assert fields_of(await tenant.client.patch(url, json={"email": None})) == ["email"]
    assert fields_of(await tenant.client.patch(url, json={"first_name": "a\r\nb"})) == ["first_name"]
    many = {f"k{i}": "v" for i in range(49)}
    assert fields_of(await tenant.client.patch(url, json={"fields": many})) == ["fields"]
    other = await tenant.client.post("/v1/contacts", json={"email": "other@example.com"})
    r = await tenant.client.patch(f"/v1/contacts/{other.json()['id']}", json={"email": "c.new@EXAMPLE.com"})
    assert r.status_code == 409 and r.json()["code"] == "contact.exists"


async def test_list_pages_newest_first_and_delete(tenant: Tenant) -> None:
    ids = []
    for i in range(3):
        ids.append((await tenant.client.post("/v1/contacts", json={"email": f"p{i}@example.com"})).json()["id"])
    page = (await tenant.client.get("/v1/contacts", params={"limit": 2})).json()
    assert [c["id"] for c in page["data"]] == [ids[2], ids[1]]
    rest = (await tenant.client.get("/v1/contacts", params={"limit": 2, "cursor": page["next_cursor"]})).json()
    assert [c["id"] for c in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    assert (await tenant.client.delete(f"/v1/contacts/{ids[0]}")).status_code == 204
    missing = await tenant.client.get(f"/v1/contacts/{ids[0]}")
    assert missing.status_code == 404 and missing.json()["code"] == "contact.not_found"


async def test_suppressed_flag(tenant: Tenant) -> None:
    contact = (await tenant.client.post("/v1/contacts", json={"email": "gone@example.com"})).json()
    await tenant.client.post("/v1/suppressions", json={"email": "GONE@example.com"})
    assert (await tenant.client.get(f"/v1/contacts/{contact['id']}")).json()["suppressed"] is True
