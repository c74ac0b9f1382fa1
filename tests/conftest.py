"""Test set-up: a throwaway PostgreSQL database and Redis index per run, migrations applied by alembic,
and a mail world on loopback (DNS, SMTP, Dovecot; ``tests/servers/mail_world.py``) so that every account
the tests connect passes real verification.

Isolation is per tenant, not per rolled-back transaction: every test gets fresh workspaces (random
names) from the ``workspace`` factory, and the product scopes every query by workspace. That lets tests
exercise what a rollback fixture would hide: real commits seen from other connections (the worker, a
concurrent request, ``pg_dump``), the request boundary's own commit, unique-index races. The database
itself is dropped at the end of the run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import MasterKeyring, generate_master_key
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.kit.special_use import set_process_default
from nimbus_api.validation.service import build_verifier
from nimbus_api.webhooks.runtime import build_kit
from nimbus_api.workspaces import service as workspaces
from tests.servers.mail_world import IMAP_HOST, SMTP_HOST, MailWorld
from tests.servers.oauth_server import OAuthTestServer

PG_ADMIN_DSN = os.environ.get("NIMBUS_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("NIMBUS_TEST_REDIS", "redis://127.0.0.1:6379")


def _db_url(name: str) -> str:
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"nimbus_test_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    url = _db_url(name)
    try:
        upgrade_head(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database index of this run's own (1..15, or ``NIMBUS_TEST_REDIS_INDEX`` when several runs share
    one Redis and must not meet), flushed before and after."""
    chosen = os.environ.get("NIMBUS_TEST_REDIS_INDEX")
    index = int(chosen) if chosen else 1 + secrets.randbelow(15)
    url = f"{REDIS_BASE}/{index}"

    async def flush() -> None:
        client = Redis.from_url(url)
        await client.flushdb()
        await client.aclose()

    asyncio.run(flush())
    yield url
    asyncio.run(flush())


@pytest.fixture(scope="session")
def master_key() -> str:
    return generate_master_key()


_WORLD: MailWorld | None = None


@pytest.fixture(scope="session")
async def mail_world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MailWorld]:
    global _WORLD
    world = MailWorld(tmp_path_factory.mktemp("mail-world"))
    await world.start()
    _WORLD = world
    yield world
    _WORLD = None
    await world.stop()


# --- OAuth (XOAUTH2/OAUTHBEARER): the mail world's authorization server, started on first use


@pytest.fixture(scope="session")
def oauth_server(mail_world: MailWorld) -> OAuthTestServer:
    """The mail world's OAuth 2 server (tests/servers/oauth_server.py), running; its access tokens log in
    to the world's SMTP and Dovecot. Session-wide: tests add their own clients and users, and a test that
    changes ``granted_scope`` or ``access_token_lifetime`` restores it (see ``oauth_defaults``)."""
    return mail_world.enable_oauth()


@pytest.fixture
def oauth_defaults(oauth_server: OAuthTestServer) -> Iterator[OAuthTestServer]:
    """``oauth_server`` with its per-test knobs (granted scope, token lifetime, a failing revocation
    endpoint) restored afterwards."""
    scope, lifetime = oauth_server.granted_scope, oauth_server.access_token_lifetime
    yield oauth_server
    oauth_server.granted_scope, oauth_server.access_token_lifetime = scope, lifetime
    oauth_server.revoke_status = oauth_server.refresh_status = None


# The OAuth accounts' providers in the run's settings: both point at the mail world's authorization server
# (started here), whose clients know the callback URLs, and their mail hosts are the world's servers.
OAUTH_FRONTEND = "https://app.example.test"
OAUTH_CLIENTS = {"google": ("nimbus-google", "google-client-secret"), "microsoft": ("nimbus-ms", "ms-client-secret")}


def oauth_settings(mail_world: MailWorld, public_url: str = "http://127.0.0.1:8000") -> dict[str, Any]:
    server = mail_world.enable_oauth()
    out: dict[str, Any] = {"oauth_frontend_origins": [OAUTH_FRONTEND]}
    for provider, (client_id, secret) in OAUTH_CLIENTS.items():
        server.add_client(client_id, secret, [f"{public_url}/v1/oauth/{provider}/callback"], style=provider)
        out |= {
            f"oauth_{provider}_client_id": client_id,
            f"oauth_{provider}_client_secret": SecretStr(secret),
            f"oauth_{provider}_authorize_url": server.authorize_url,
            f"oauth_{provider}_token_url": server.token_url,
            # Google revokes at its revoke URL; Microsoft has none (its default, None)
            f"oauth_{provider}_revoke_url": server.revoke_url if provider == "google" else None,
            f"oauth_{provider}_smtp_host": SMTP_HOST,
            f"oauth_{provider}_smtp_port": mail_world.smtp.port,
            f"oauth_{provider}_smtp_mode": "starttls",
            f"oauth_{provider}_imap_host": IMAP_HOST,
            f"oauth_{provider}_imap_port": mail_world.dovecot.ports.imaps,
        }
    return out


def build_settings(database_url: str, redis_url: str, master_key: str, mail_world: MailWorld) -> Settings:
    """The run's settings. The mail world's domains are under ``.test`` (RFC 2606), so special-use names
    are allowed, as an operator of a staging mail world would: the apps built from these settings accept
    them in requests, and the process default (what a worker sets at start) covers validation outside
    a request (``kit.special_use``)."""
    settings = Settings(
        allow_special_use_domains=True,
        database_url=database_url,
        redis_url=redis_url,
        master_keys=[SecretStr(master_key)],
        log_level="debug",
        roundtrip_timeout=10,
        verification_timeout_seconds=30,
        # Limits are exercised by their own tests; here many accounts are connected per workspace.
        verify_limit_per_account=10_000,
        verify_limit_per_workspace=10_000,
        # Workers started by tests do not sync every mailbox of the run; the sync tests run their own.
        sync_enabled=False,
        # Nor recompute every inbox's health (tests set scores by hand); the health tests run their own.
        deliverability_enabled=False,
        **mail_world.settings_overrides(),
        **oauth_settings(mail_world),
    )
    set_process_default(settings.allow_special_use_domains)
    return settings


def build_app_state(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    vault: Vault,
) -> AppState:
    """What the app holds, built from the test's stores (the real verifier, rate-limited in ``redis``)."""
    verifier = build_verifier(settings, redis)
    return AppState(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        redis=redis,
        vault=vault,
        verifier=verifier,
        webhooks=build_kit(settings, verifier.net, vault, Actor.system("webhook_test")),
    )


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, master_key: str, mail_world: MailWorld) -> Settings:
    return build_settings(database_url, redis_url, master_key, mail_world)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=10, max_overflow=20)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture(scope="session")
def vault(master_key: str) -> Vault:
    return Vault(MasterKeyring.from_strings([master_key]))


@pytest.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def app_state(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis, vault: Vault
) -> AppState:
    return build_app_state(settings, engine, sessionmaker, redis, vault)


@pytest.fixture(scope="session")
def app(settings: Settings, app_state: AppState):  # type: ignore[no-untyped-def]
    return create_app(settings, state=app_state)


@pytest.fixture(scope="session")
async def http(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """An HTTP client for the real ASGI app (no auth header; see ``Tenant.client``)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nimbus.test") as client:
        yield client


@dataclass
class Tenant:
    """A fresh workspace with one API key, and an HTTP client that sends it."""

    workspace_id: uuid.UUID
    name: str
    api_key_id: uuid.UUID
    token: str
    client: httpx.AsyncClient


TenantFactory = Callable[[], Awaitable[Tenant]]


async def new_tenant(
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    *,
    prefix: str = "ws",
    timeout: float | None = None,
) -> Tenant:
    """A fresh workspace (a random name under ``prefix``) with one API key, and a client of ``app`` that
    sends it; the caller closes the client."""
    name = f"{prefix}-{secrets.token_hex(6)}"
    async with sessionmaker() as session, session.begin():
        workspace = await workspaces.create_workspace(session, vault, name)
        key, token = await workspaces.create_api_key(session, workspace.id, prefix)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://nimbus.test",
        headers={"Authorization": f"Bearer {token}"},
        **({"timeout": timeout} if timeout is not None else {}),
    )
    return Tenant(workspace_id=workspace.id, name=name, api_key_id=key.id, token=token, client=client)


@pytest.fixture
async def make_tenant(
    app,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,  # type: ignore[no-untyped-def]
) -> AsyncIterator[TenantFactory]:
    clients: list[httpx.AsyncClient] = []

    async def factory() -> Tenant:
        tenant = await new_tenant(app, sessionmaker, vault)
        clients.append(tenant.client)
        return tenant

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def tenant(make_tenant: TenantFactory) -> Tenant:
    return await make_tenant()


def account_payload(**overrides: object) -> dict[str, object]:
    """A create body for a fresh mailbox of the mail world, which passes verification; tests override
    what they exercise (``email=`` creates that mailbox; ``smtp_password=``/``imap_password=`` too)."""
    assert _WORLD is not None, "request the mail_world fixture (the tenant fixtures do)"
    return _WORLD.account_payload(**overrides)


def change_smtp_password(email: str, password: str) -> None:
    """The mailbox's SMTP server accepts ``password`` from now on (and no longer the old one).

    SMTP's users are read on every AUTH, so the change is seen at once; Dovecot may take a second to
    re-read a changed passwd-file, which is why tests that change a stored password change SMTP's."""
    assert _WORLD is not None and _WORLD.smtp.users is not None, "request the mail_world fixture"
    login = email.lower()
    assert login in _WORLD.smtp.users, f"{email} is not a mailbox of the mail world"
    _WORLD.smtp.users[login] = password
