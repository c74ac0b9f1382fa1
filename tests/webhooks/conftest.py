"""Apps with the operator settings webhook URLs depend on, and a tenant of each.

``settings`` (the run's) allowlists loopback and high ports for the mail world, as a staging operator
would; ``closed`` is production's policy (nothing allowlisted), ``http_allowed`` adds
``NIMBUS_WEBHOOK_ALLOW_HTTP``. Names resolve through the mail world's real DNS server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from tests.conftest import Tenant, build_app_state, new_tenant
from tests.servers.dns_server import make_zone
from tests.servers.http_receiver import HttpReceiver
from tests.servers.mail_world import MailWorld
from tests.webhooks.harness import Rig, make_rig

HOOKS_ZONE = "hooks.test"
PUBLIC_ADDRESS = "93.184.216.34"


@pytest.fixture(scope="session")
def hooks_zone(mail_world: MailWorld) -> str:
    """``public`` resolves to a public address only; ``private`` to RFC 1918; ``mixed`` to both;
    ``metadata`` to the cloud metadata address; ``v6loop`` to ``::1``."""
    body = (
        f"public IN A {PUBLIC_ADDRESS}\n"
        "private IN A 10.0.0.5\n"
        f"mixed IN A {PUBLIC_ADDRESS}\n"
        "mixed IN A 192.168.1.1\n"
        "metadata IN A 169.254.169.254\n"
        "v6loop IN AAAA ::1\n"
    )
    mail_world.dns.add_zone(make_zone(HOOKS_ZONE, body), HOOKS_ZONE)
    return HOOKS_ZONE


def _app(settings: Settings, engine: Any, sessionmaker: Any, redis: Any, vault: Vault) -> Any:
    return create_app(settings, state=build_app_state(settings, engine, sessionmaker, redis, vault))


@pytest.fixture(scope="session")
def closed_app(settings: Settings, engine, sessionmaker, redis, vault):  # type: ignore[no-untyped-def]
    return _app(settings.model_copy(update={"egress_allow": []}), engine, sessionmaker, redis, vault)


@pytest.fixture(scope="session")
def http_app(settings: Settings, engine, sessionmaker, redis, vault):  # type: ignore[no-untyped-def]
    update = {"egress_allow": [], "webhook_allow_http": True}
    return _app(settings.model_copy(update=update), engine, sessionmaker, redis, vault)


AppTenantFactory = Callable[[Any], Awaitable[Tenant]]


@pytest.fixture
async def tenant_of(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, hooks_zone: str
) -> AsyncIterator[AppTenantFactory]:
    clients: list[httpx.AsyncClient] = []

    async def factory(app: Any) -> Tenant:
        tenant = await new_tenant(app, sessionmaker, vault, prefix="ws-hook")
        clients.append(tenant.client)
        return tenant

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def closed(tenant_of: AppTenantFactory, closed_app: Any) -> Tenant:
    return await tenant_of(closed_app)


@pytest.fixture(autouse=True)
async def quiet_outbox(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Each test here drives a dispatcher over the run's one database, some with a clock days ahead: the
    endpoints and events other tests left are set aside first (disabled, dispatched), so that what a
    test's dispatcher claims is its own."""
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE webhook_endpoints SET enabled = false WHERE enabled"))
        await session.execute(text("UPDATE events SET dispatched_at = now() WHERE dispatched_at IS NULL"))


@pytest.fixture
async def rig(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault) -> AsyncIterator[Rig]:
    rig = make_rig(settings, sessionmaker, vault)
    yield rig
    await rig.close()


@pytest.fixture
async def receiver(mail_world: MailWorld) -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(tls=mail_world.certs.server_context()) as server:
        yield server
