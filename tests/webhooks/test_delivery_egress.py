"""Deliveries go through the egress policy at every connection: 0 connections to a refused address.

The URLs are written straight into ``webhook_endpoints`` (as if the policy had changed since they were
saved), except the rebinding case, which is created through the API while its name resolves to a
public address and then re-pointed at loopback. The policy is production's (nothing allowlisted) plus
the listener's port, so only the address rules can refuse; a loopback listener (IPv4 and IPv6) counts
every connection made to it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import WebhookEndpoint
from nimbus_api.webhooks.service import _add_secret
from tests.conftest import Tenant, build_app_state
from tests.servers.dns_server import make_zone
from tests.servers.http_receiver import HttpReceiver
from tests.servers.mail_world import MailWorld
from tests.webhooks.conftest import PUBLIC_ADDRESS, AppTenantFactory
from tests.webhooks.harness import add_endpoint, commit_events, make_rig


@pytest.fixture
async def listeners(mail_world: MailWorld) -> AsyncIterator[tuple[HttpReceiver, HttpReceiver]]:
    v4 = await HttpReceiver(tls=mail_world.certs.server_context()).start()
    v6 = await HttpReceiver(tls=mail_world.certs.server_context(), host="::1", port=v4.port).start()
    yield v4, v6
    await v4.stop()
    await v6.stop()


async def _endpoint(sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, tenant: Tenant, url: str) -> None:
    async with sessionmaker() as session, session.begin():
        row = WebhookEndpoint(workspace_id=tenant.workspace_id, url=url, event_types=["*"], enabled=True)
        session.add(row)
        await session.flush()
        await _add_secret(session, vault, row)


async def test_refused_addresses_get_no_connection_at_delivery(
    tenant: Tenant,
    listeners: tuple[HttpReceiver, HttpReceiver],
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    hooks_zone: str,
) -> None:
    v4, v6 = listeners
    port = v4.port
    urls = [
        f"https://127.0.0.1:{port}/a",
        f"https://[::1]:{port}/b",
        f"https://0x7f000001:{port}/c",
        f"https://2130706433:{port}/d",
        f"https://localhost:{port}/e",
        f"https://10.0.0.5:{port}/f",
        f"https://private.{hooks_zone}:{port}/g",
        f"https://mixed.{hooks_zone}:{port}/h",
        f"https://metadata.{hooks_zone}:{port}/i",
        f"https://v6loop.{hooks_zone}:{port}/j",
        f"https://mail.example.test:{port}/k",  # the run's loopback name, not allowlisted here
    ]
    for url in urls:
        await _endpoint(sessionmaker, vault, tenant, url)
    (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"probe": True}])
    rig = make_rig(settings, sessionmaker, vault, egress_allow=[f":{port}"])
    try:
        await rig.step()
        deliveries = await rig.deliveries(event.id)
        assert len(deliveries) == len(urls)
        classes = {d.last_error_class for d in deliveries}
        assert classes <= {"egress_refused", "unresolvable"} and "egress_refused" in classes, classes
        assert all(d.status == "pending" and d.attempts == 1 for d in deliveries)
        assert rig.kit.transport.backend.connections == 0
    finally:
        await rig.close()
    assert (v4.connections, v6.connections) == (0, 0)


async def test_a_name_public_at_create_and_private_at_delivery_is_refused_then(
    tenant_of: AppTenantFactory,
    mail_world: MailWorld,
    listeners: tuple[HttpReceiver, HttpReceiver],
    settings: Settings,
    engine: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Any,
    vault: Vault,
) -> None:
    from nimbus_api.api.app import create_app

    v4, _ = listeners
    zone = f"rebind-{secrets.token_hex(3)}.test"
    mail_world.dns.add_zone(make_zone(zone, f"hook IN A {PUBLIC_ADDRESS}\n", ttl=1), zone)
    closed = settings.model_copy(update={"egress_allow": [f":{v4.port}"]})
    app = create_app(closed, state=build_app_state(closed, engine, sessionmaker, redis, vault))
    tenant = await tenant_of(app)
    await add_endpoint(tenant.client, f"https://hook.{zone}:{v4.port}/hook")  # public now: accepted

    mail_world.dns.add_zone(make_zone(zone, "hook IN A 127.0.0.1\n", ttl=1), zone)  # rebound to loopback
    (event,) = await commit_events(sessionmaker, tenant.workspace_id, [{"rebind": True}])
    rig = make_rig(settings, sessionmaker, vault, egress_allow=[f":{v4.port}"])
    try:
        await rig.step()
        (delivery,) = await rig.deliveries(event.id)
        assert delivery.last_error_class == "egress_refused"
        (attempt,) = await rig.attempts(delivery.id)
        assert "127.0.0.1" not in (attempt.error or ""), "a refusal never names the internal address"
    finally:
        await rig.close()
    assert v4.connections == 0


async def test_workspaces_receive_only_their_own_events(
    make_tenant: Any,
    mail_world: MailWorld,
    rig: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    a, b = await make_tenant(), await make_tenant()
    async with (
        HttpReceiver(tls=mail_world.certs.server_context()) as for_a,
        HttpReceiver(tls=mail_world.certs.server_context()) as for_b,
    ):
        await add_endpoint(a.client, f"https://mail.example.test:{for_a.port}/a")
        await add_endpoint(b.client, f"https://mail.example.test:{for_b.port}/b")
        of_a = await commit_events(sessionmaker, a.workspace_id, [{"of": "a", "n": n} for n in range(5)])
        of_b = await commit_events(sessionmaker, b.workspace_id, [{"of": "b", "n": n} for n in range(3)])
        await rig.step()  # at most 4 in flight per endpoint: the fifth goes in the next round
        await rig.step()
        await for_a.wait_for(5)
        await for_b.wait_for(3)
        assert {r.headers["webhook-id"] for r in for_a.requests} == {str(e.id) for e in of_a}
        assert {r.headers["webhook-id"] for r in for_b.requests} == {str(e.id) for e in of_b}
        # nor read, replay, test or rotate them
        b_endpoint = (await b.client.get("/v1/webhook-endpoints")).json()["data"][0]["id"]
        for method, path, body in (
            ("GET", f"/v1/webhook-endpoints/{b_endpoint}/deliveries", None),
            ("POST", f"/v1/webhook-endpoints/{b_endpoint}/test", None),
            ("POST", f"/v1/webhook-endpoints/{b_endpoint}/rotate-secret", None),
            ("POST", f"/v1/events/{of_b[0].id}/replay", {}),
        ):
            r = await a.client.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        assert len(for_b.requests) == 3
