"""Per-account sending settings: daily new-contact limit, connections, send interval, and the stage a
person sets on an inbox warmed elsewhere (audited). None of them re-runs the connection checks."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import CredentialAccess, EmailAccount
from tests.conftest import Tenant, TenantFactory, account_payload


async def test_create_with_defaults_and_with_values(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/email-accounts", json=account_payload())
    assert r.status_code == 201, r.text
    account = r.json()
    assert (account["daily_new_contacts_limit"], account["max_connections"], account["min_send_interval_seconds"]) == (
        None,
        1,
        0,
    )
    assert account["last_sent_at"] is None
    r = await tenant.client.post(
        "/v1/email-accounts",
        json=account_payload(daily_new_contacts_limit=20, max_connections=4, min_send_interval_seconds=90),
    )
    assert r.status_code == 201, r.text
    assert (
        r.json()["daily_new_contacts_limit"],
        r.json()["max_connections"],
        r.json()["min_send_interval_seconds"],
    ) == (
        20,
        4,
        90,
    )


async def test_out_of_range_values_are_422(tenant: Tenant) -> None:
    for field, value in [
        ("daily_new_contacts_limit", 0),
        ("max_connections", 0),
        ("max_connections", 11),
        ("min_send_interval_seconds", -1),
        ("min_send_interval_seconds", 86_401),
    ]:
        r = await tenant.client.post("/v1/email-accounts", json=account_payload(**{field: value}))
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == [field], r.text
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(current_stage=3))
    assert r.status_code == 422, "the stage is set by PATCH, on an existing inbox"


async def test_patch_sets_limits_and_stage_without_reverifying(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = (await tenant.client.post("/v1/email-accounts", json=account_payload())).json()
    url = f"/v1/email-accounts/{account['id']}"
    verified_at = account["last_verification"]["verified_at"]
    r = await tenant.client.patch(
        url,
        json={
            "daily_new_contacts_limit": 15,
            "max_connections": 3,
            "min_send_interval_seconds": 120,
            "current_stage": 4,
        },
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert (
        patched["daily_new_contacts_limit"],
        patched["max_connections"],
        patched["min_send_interval_seconds"],
        patched["current_stage"],
    ) == (15, 3, 120, 4)
    assert patched["last_verification"]["verified_at"] == verified_at, "no new verification ran"
    async with sessionmaker() as session:
        row = await session.get_one(EmailAccount, uuid.UUID(account["id"]))
        assert row.credentials_version == 1
        decrypts = await session.scalar(
            select(CredentialAccess.id).where(CredentialAccess.account_id == uuid.UUID(account["id"]))
        )
        assert decrypts is None, "no stored secret was decrypted"

    r = await tenant.client.patch(url, json={"daily_new_contacts_limit": None})
    assert r.json()["daily_new_contacts_limit"] is None
    for body in ({"max_connections": None}, {"current_stage": None}, {"current_stage": 6}, {"current_stage": -1}):
        r = await tenant.client.patch(url, json=body)
        assert r.status_code == 422, (body, r.text)


async def test_stage_changes_are_audited(tenant: Tenant) -> None:
    account = (await tenant.client.post("/v1/email-accounts", json=account_payload())).json()
    url = f"/v1/email-accounts/{account['id']}"
    assert (await tenant.client.get(f"{url}/events")).json() == {"data": [], "next_cursor": None}
    await tenant.client.patch(url, json={"current_stage": 3})
    await tenant.client.patch(url, json={"current_stage": 3, "label": "same stage: no event"})
    await tenant.client.patch(url, json={"current_stage": 5})
    await tenant.client.patch(url, json={"max_connections": 2})
    events = (await tenant.client.get(f"{url}/events")).json()["data"]
    assert [(e["kind"], e["detail"]) for e in events] == [
        ("stage_changed", {"from": 3, "to": 5}),
        ("stage_changed", {"from": 0, "to": 3}),
    ]
    assert all(e["actor"] == f"api_key:{tenant.api_key_id}" for e in events)
    assert all(e["account_id"] == account["id"] for e in events)
    page = (await tenant.client.get(f"{url}/events", params={"limit": 1})).json()
    assert len(page["data"]) == 1 and page["next_cursor"]


async def test_events_of_another_workspace_are_404(make_tenant: TenantFactory) -> None:
    a, b = await make_tenant(), await make_tenant()
    account = (await b.client.post("/v1/email-accounts", json=account_payload())).json()
    await b.client.patch(f"/v1/email-accounts/{account['id']}", json={"current_stage": 2})
    r = await a.client.get(f"/v1/email-accounts/{account['id']}/events")
    assert r.status_code == 404 and r.json()["code"] == "email_account.not_found"
    r = await a.client.patch(f"/v1/email-accounts/{account['id']}", json={"current_stage": 5})
    assert r.status_code == 404
    assert len((await b.client.get(f"/v1/email-accounts/{account['id']}/events")).json()["data"]) == 1
