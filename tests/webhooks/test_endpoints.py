"""Webhook endpoints: the resource, its signing secret, and the URL rules (production's egress policy)."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Vault
from nimbus_api.kit import crypto
from nimbus_api.models import DataKey, WebhookEndpoint, WebhookSecret
from tests.conftest import Tenant
from tests.webhooks.conftest import HOOKS_ZONE, AppTenantFactory

URL = f"https://public.{HOOKS_ZONE}/nimbus"


async def _create(tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = await tenant.client.post("/v1/webhook-endpoints", json={"url": URL, **body})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def _secret_rows(sm: async_sessionmaker[AsyncSession], endpoint_id: str) -> list[WebhookSecret]:
    async with sm() as session:
        return list(
            await session.scalars(
                select(WebhookSecret)
                .where(WebhookSecret.endpoint_id == uuid.UUID(endpoint_id))
                .order_by(WebhookSecret.created_at)
            )
        )


async def _opened(sm: async_sessionmaker[AsyncSession], vault: Vault, row: WebhookSecret) -> str:
    async with sm() as session:
        key = await session.get_one(DataKey, row.data_key_id)
        return crypto.decrypt(vault.material(key), row.ciphertext)


async def test_create_shows_the_secret_once_and_stores_it_encrypted(
    closed: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    created = await _create(closed, description="CRM", event_types=["enrollment.*", "campaign.paused"])
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert created["event_types"] == ["enrollment.*", "campaign.paused"]
    assert created["enabled"] is True and created["previous_secret_expires_at"] is None

    one = await closed.client.get(f"/v1/webhook-endpoints/{created['id']}")
    listed = await closed.client.get("/v1/webhook-endpoints")
    assert one.status_code == 200 and "secret" not in one.json()
    assert [e["id"] for e in listed.json()["data"]] == [created["id"]]
    for r in (one, listed):
        assert secret not in r.text and secret.removeprefix("whsec_") not in r.text

    (row,) = await _secret_rows(sessionmaker, created["id"])
    assert row.expires_at is None
    assert secret.encode() not in row.ciphertext and secret.removeprefix("whsec_").encode() not in row.ciphertext
    assert await _opened(sessionmaker, vault, row) == secret, "sealed under the workspace's data key"
    async with sessionmaker() as session:
        key = await session.get_one(DataKey, row.data_key_id)
    assert key.workspace_id == closed.workspace_id and key.state == "active"


async def test_every_endpoint_gets_its_own_secret(closed: Tenant) -> None:
    first, second = await _create(closed), await _create(closed)
    assert first["secret"] != second["secret"]


async def test_rotate_returns_a_new_secret_and_keeps_the_previous_for_the_overlap(
    closed: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    created = await _create(closed)
    r = await closed.client.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    previous, current = await _secret_rows(sessionmaker, created["id"])
    assert current.expires_at is None and previous.expires_at is not None
    assert timedelta(hours=23, minutes=59) < previous.expires_at - previous.created_at < timedelta(hours=24, minutes=1)
    assert await _opened(sessionmaker, vault, previous) == created["secret"]
    assert await _opened(sessionmaker, vault, current) == rotated["secret"]
    read = (await closed.client.get(f"/v1/webhook-endpoints/{created['id']}")).json()
    assert read["previous_secret_expires_at"] is not None and "secret" not in read
    assert rotated["previous_secret_expires_at"] == read["previous_secret_expires_at"]


async def test_a_rotation_drops_secrets_whose_overlap_ended(
    closed: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await _create(closed)
    await closed.client.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret")
    async with sessionmaker() as session, session.begin():
        for row in await session.scalars(
            select(WebhookSecret).where(
                WebhookSecret.endpoint_id == uuid.UUID(created["id"]), WebhookSecret.expires_at.is_not(None)
            )
        ):
            row.expires_at = row.created_at
    await closed.client.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret")
    rows = await _secret_rows(sessionmaker, created["id"])
    assert len(rows) == 2 and sum(r.expires_at is None for r in rows) == 1


REFUSED_URLS = [
    ("http://public.hooks.test/x", "scheme"),
    ("https://127.0.0.1/x", "address"),
    ("https://[::1]/x", "address"),
    ("https://0x7f000001/x", "address"),
    ("https://2130706433/x", "address"),
    ("https://0177.0.0.1/x", "address"),
    ("https://127.1/x", "address"),
    ("https://[::ffff:127.0.0.1]/x", "address"),
    ("https://localhost/x", "address"),
    ("https://api.localhost/x", "address"),
    ("https://10.1.2.3/x", "address"),
    ("https://169.254.169.254/latest/meta-data", "address"),
    ("https://private.hooks.test/x", "address"),
    ("https://mixed.hooks.test/x", "address"),
    ("https://metadata.hooks.test/x", "address"),
    ("https://v6loop.hooks.test/x", "address"),
    ("https://nowhere.hooks.test/x", "unresolvable"),
    ("https://public.hooks.test:8443/x", "port"),
    ("https://public.hooks.test:25/x", "port"),
    ("https://user:pw@public.hooks.test/x", "credentials"),
    ("https://999.0.0.1/x", "host"),
    ("https://1.2.3.4.5/x", "host"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS, ids=[u for u, _ in REFUSED_URLS])
async def test_urls_deliveries_may_not_reach_are_refused(closed: Tenant, url: str, reason: str) -> None:
    r = await closed.client.post("/v1/webhook-endpoints", json={"url": url})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert (problem["code"], problem["reason"]) == ("webhook_endpoint.url_refused", reason), problem
    assert "10.0.0.5" not in r.text and "192.168.1.1" not in r.text, "the address a name resolved to is not named"
    assert (await closed.client.get("/v1/webhook-endpoints")).json()["data"] == [], "nothing saved"


async def test_a_url_that_is_no_http_url_is_a_validation_error(closed: Tenant) -> None:
    for url in ("ftp://public.hooks.test/x", "public.hooks.test/x", "https://public.hooks.test/a b"):
        r = await closed.client.post("/v1/webhook-endpoints", json={"url": url})
        assert r.status_code == 422 and r.json()["code"] == "validation_error", url


async def test_an_update_checks_the_new_url_and_keeps_the_old_one_when_refused(closed: Tenant) -> None:
    created = await _create(closed)
    r = await closed.client.patch(f"/v1/webhook-endpoints/{created['id']}", json={"url": "https://127.0.0.1/"})
    assert r.status_code == 422 and r.json()["code"] == "webhook_endpoint.url_refused"
    assert (await closed.client.get(f"/v1/webhook-endpoints/{created['id']}")).json()["url"] == URL


async def test_http_needs_the_operator_setting(tenant_of: AppTenantFactory, http_app: Any) -> None:
    tenant = await tenant_of(http_app)
    r = await tenant.client.post("/v1/webhook-endpoints", json={"url": f"http://public.{HOOKS_ZONE}/x"})
    assert r.status_code == 201, r.text
    refused = await tenant.client.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1/x"})
    assert refused.status_code == 422 and refused.json()["reason"] == "address", "http is not a way around egress"


async def test_the_allowlist_opens_loopback_and_high_ports(tenant: Tenant) -> None:
    """The run's settings allowlist ``127.0.0.0/8`` and ``:1024-65535`` (the mail world's): as they say."""
    r = await tenant.client.post("/v1/webhook-endpoints", json={"url": "https://127.0.0.1:8443/x"})
    assert r.status_code == 201, r.text
    metadata = await tenant.client.post("/v1/webhook-endpoints", json={"url": "https://169.254.169.254/x"})
    assert metadata.status_code == 422, "metadata addresses stay refused even when allowlisted"


@pytest.mark.parametrize(
    "event_types",
    [["*"], ["enrollment.*"], ["enrollment.replied", "account.disabled"], ["webhook.test", "alert.*"]],
)
async def test_event_types_accept_catalogue_types_and_families(closed: Tenant, event_types: list[str]) -> None:
    assert (await _create(closed, event_types=event_types))["event_types"] == event_types


@pytest.mark.parametrize(
    "event_types",
    [[], ["enrollment.nope"], ["nope.*"], ["enrollment"], ["enrollment.**"], ["*", "*"], ["Account.disabled"], "*"],
)
async def test_event_types_outside_the_catalogue_are_422(closed: Tenant, event_types: Any) -> None:
    r = await closed.client.post("/v1/webhook-endpoints", json={"url": URL, "event_types": event_types})
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
    assert r.json()["errors"][0]["field"].startswith("event_types")


async def test_default_event_types_are_everything(closed: Tenant) -> None:
    assert (await _create(closed))["event_types"] == ["*"]


async def test_patch_changes_only_what_is_given(closed: Tenant) -> None:
    created = await _create(closed, description="d", rate_limit_per_second=5)
    path = f"/v1/webhook-endpoints/{created['id']}"
    r = await closed.client.patch(path, json={"enabled": False, "event_types": ["contact.suppressed"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["enabled"], body["event_types"], body["description"], body["rate_limit_per_second"]) == (
        False,
        ["contact.suppressed"],
        "d",
        5,
    )
    assert "secret" not in body
    cleared = (await closed.client.patch(path, json={"description": None, "rate_limit_per_second": None})).json()
    assert (cleared["description"], cleared["rate_limit_per_second"]) == (None, None)
    for bad in ({"enabled": None}, {"url": None}, {"event_types": None}, {"secret": "whsec_x"}):
        assert (await closed.client.patch(path, json=bad)).status_code == 422, bad


async def test_enabling_again_clears_the_disabled_reason(
    closed: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await _create(closed)
    async with sessionmaker() as session, session.begin():
        row = await session.get_one(WebhookEndpoint, uuid.UUID(created["id"]))
        row.enabled, row.disabled_reason = False, "failed every attempt for 5 days"
    path = f"/v1/webhook-endpoints/{created['id']}"
    assert (await closed.client.get(path)).json()["disabled_reason"] == "failed every attempt for 5 days"
    enabled = (await closed.client.patch(path, json={"enabled": True})).json()
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)


async def test_delete_removes_the_endpoint_and_its_secrets(
    closed: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await _create(closed)
    assert (await closed.client.delete(f"/v1/webhook-endpoints/{created['id']}")).status_code == 204
    assert (await closed.client.get(f"/v1/webhook-endpoints/{created['id']}")).status_code == 404
    assert await _secret_rows(sessionmaker, created["id"]) == []
    assert (await closed.client.delete(f"/v1/webhook-endpoints/{created['id']}")).status_code == 404


async def test_another_workspaces_endpoint_is_a_404(
    closed: Tenant, tenant_of: AppTenantFactory, closed_app: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await _create(closed)
    other = await tenant_of(closed_app)
    path = f"/v1/webhook-endpoints/{created['id']}"
    for method, url, body in (
        ("GET", path, None),
        ("PATCH", path, {"description": "mine now"}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None),
    ):
        r = await other.client.request(method, url, json=body)
        assert r.status_code == 404 and r.json()["code"] == "webhook_endpoint.not_found", (method, r.text)
    assert (await other.client.get("/v1/webhook-endpoints")).json()["data"] == []
    assert len(await _secret_rows(sessionmaker, created["id"])) == 1, "no rotation happened"
    assert (await closed.client.get(path)).json()["description"] is None


async def test_list_pages_with_a_cursor(closed: Tenant) -> None:
    ids = [(await _create(closed))["id"] for _ in range(3)]
    first = (await closed.client.get("/v1/webhook-endpoints", params={"limit": 2})).json()
    second = (
        await closed.client.get("/v1/webhook-endpoints", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [e["id"] for e in first["data"] + second["data"]] == ids[::-1]
    assert second["next_cursor"] is None
