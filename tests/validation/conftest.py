"""Fixtures for the connect-time validation tests: apps with short timeouts (and low limits), tenants of
those apps, extra scripted SMTP servers, and sending domains with broken DNS.

Every app shares the session's engine, Redis and vault (tests/conftest.py); only the settings and the
verifier differ:

* ``fast``: the world's settings with short timeouts (connect 1 s, command 1.5 s, DNS 1 s, roundtrip
  2 s), limits as generous as the shared app's;
* ``limited``: ``fast`` plus low limits (``LIMITED``), for rate limits and lockouts;
* ``closed``: ``fast`` without the egress allowlist, so loopback is refused as in production.

Extra SMTP servers (``smtp_server``) listen on 127.0.0.1 and are reached as ``smtp.example.test`` on
their own port: the test CA's certificate names that host, so TLS verifies as with the world's server.
Broken sending domains (``broken_domain``) are zones of their own (two labels, so DMARC has no
organizational domain to fall back on) served by the world's DNS.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import Envelope
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import Credential, Domain, EmailAccount
from tests.conftest import Tenant, build_app_state, new_tenant
from tests.servers.dns_server import make_zone, txt
from tests.servers.mail_world import BASE_DOMAIN, DKIM_SELECTOR, SMTP_HOST, MailWorld
from tests.servers.smtp_server import TestSmtpServer

FAST = {
    "connect_timeout_seconds": 1.0,
    "command_timeout_seconds": 1.5,
    "dns_timeout_seconds": 1.0,
    "roundtrip_timeout": 2.0,
    "verification_timeout_seconds": 10.0,
}
LIMITED = {
    "verify_limit_per_account": 4,
    "verify_limit_per_workspace": 6,
    "verify_window_seconds": 60,
    "auth_failure_limit": 2,
    "auth_failure_window_seconds": 60,
}


@pytest.fixture(scope="session")
def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@pytest.fixture(scope="session")
def limited_settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update=LIMITED)


@pytest.fixture(scope="session")
def closed_settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update={"egress_allow": []})


def build_app(settings: Settings, engine, sessionmaker, redis, vault):  # type: ignore[no-untyped-def]
    """An app of ``settings`` on the session's engine, Redis and vault, with its own verifier."""
    return create_app(settings, state=build_app_state(settings, engine, sessionmaker, redis, vault))


@pytest.fixture(scope="session")
def fast_app(fast_settings, engine, sessionmaker, redis, vault):  # type: ignore[no-untyped-def]
    return build_app(fast_settings, engine, sessionmaker, redis, vault)


@pytest.fixture(scope="session")
def limited_app(limited_settings, engine, sessionmaker, redis, vault):  # type: ignore[no-untyped-def]
    return build_app(limited_settings, engine, sessionmaker, redis, vault)


@pytest.fixture(scope="session")
def closed_app(closed_settings, engine, sessionmaker, redis, vault):  # type: ignore[no-untyped-def]
    return build_app(closed_settings, engine, sessionmaker, redis, vault)


AppTenantFactory = Callable[[Any], Awaitable[Tenant]]


@pytest.fixture
async def tenant_of(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, mail_world: MailWorld
) -> AsyncIterator[AppTenantFactory]:
    """``await tenant_of(app)``: a fresh workspace with a client of ``app`` (as ``make_tenant`` does).
    Requests ``mail_world`` so that ``account_payload`` has a world to add mailboxes to."""
    clients: list[httpx.AsyncClient] = []

    async def factory(app: Any) -> Tenant:
        tenant = await new_tenant(app, sessionmaker, vault, prefix="ws-val", timeout=60)
        clients.append(tenant.client)
        return tenant

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def fast(tenant_of: AppTenantFactory, fast_app: Any) -> Tenant:
    return await tenant_of(fast_app)


@pytest.fixture
async def limited(tenant_of: AppTenantFactory, limited_app: Any) -> Tenant:
    return await tenant_of(limited_app)


@pytest.fixture
async def closed(tenant_of: AppTenantFactory, closed_app: Any) -> Tenant:
    return await tenant_of(closed_app)


# --- extra SMTP servers ------------------------------------------------------------------------------

SmtpFactory = Callable[..., Awaitable[TestSmtpServer]]


@pytest.fixture
async def smtp_server(mail_world: MailWorld) -> AsyncIterator[SmtpFactory]:
    """``await smtp_server(**TestSmtpServer options)``: a started server, stopped after the test.

    Defaults: STARTTLS with the test CA's certificate, no users (no AUTH), no delivery.
    """
    started: list[TestSmtpServer] = []

    async def factory(**options: Any) -> TestSmtpServer:
        if "ssl_context" not in options and not options.get("silent"):
            options.setdefault("tls_context", mail_world.certs.server_context())
        server = TestSmtpServer(**options)
        await server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.stop()


def lmtp_delivery(world: MailWorld, folder: str | None = None, delay: float = 0.0) -> Callable[[Envelope], Any]:
    """A ``deliver`` hook handing each message to Dovecot (into ``folder``), after ``delay`` seconds."""

    async def deliver(envelope: Envelope) -> None:
        if delay:
            await asyncio.sleep(delay)
        for rcpt in envelope.rcpt_tos:
            await asyncio.to_thread(
                world.dovecot.deliver_lmtp, rcpt.lower(), envelope.original_content or b"", folder=folder
            )

    return deliver


def on_server(body: dict[str, Any], server: TestSmtpServer, **smtp: Any) -> dict[str, Any]:
    """``body`` with its SMTP section pointed at ``server`` (same host name, the server's port)."""
    section = dict(body["smtp"])  # type: ignore[arg-type]
    section.update({"host": SMTP_HOST, "port": server.port, "mode": "starttls"})
    section.update(smtp)
    return {**body, "smtp": section}


# --- sending domains ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dkim_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@dataclass
class DomainRecords:
    mx: bool = True
    spf: tuple[str, ...] = ("v=spf1 ip4:127.0.0.0/8 -all",)
    dkim: bool = True
    dmarc: bool = True


BrokenDomain = Callable[..., str]


@pytest.fixture
def broken_domain(mail_world: MailWorld, dkim_key: str) -> BrokenDomain:
    """``broken_domain(domain, **DomainRecords fields)`` serves ``domain`` with exactly those records
    (replacing the healthy zone ``account_payload`` added for it); returns the domain."""

    def serve(domain: str, **records: Any) -> str:
        wanted = DomainRecords(**records)
        lines = []
        if wanted.mx:
            lines.append(f"@ IN MX 10 mail.{BASE_DOMAIN}.")
        lines += [f"@ IN TXT {txt(spf)}" for spf in wanted.spf]
        if wanted.dkim:
            lines.append(f"{DKIM_SELECTOR}._domainkey IN TXT {txt('v=DKIM1; k=rsa; p=' + dkim_key)}")
        if wanted.dmarc:
            lines.append(f"_dmarc IN TXT {txt('v=DMARC1; p=reject')}")
        mail_world.dns.add_zone(make_zone(domain, "\n".join(lines)), domain)
        return domain

    return serve


def fresh_domain(label: str) -> str:
    """A two-label domain of its own (DMARC then has no organizational domain to fall back on)."""
    return f"{label}-{secrets.token_hex(4)}.test"


def fresh_address(label: str = "val", domain: str = BASE_DOMAIN) -> str:
    return f"{label}-{secrets.token_hex(4)}@{domain}"


# --- what was saved ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    accounts: int
    domains: int
    credentials: int


@pytest.fixture
def saved(sessionmaker: async_sessionmaker[AsyncSession]) -> Callable[[Tenant], Awaitable[Saved]]:
    """What the tenant's workspace holds in the database: accounts, domain rows, credential rows."""

    async def count(tenant: Tenant) -> Saved:
        async with sessionmaker() as session:
            numbers = []
            for model in (EmailAccount, Domain, Credential):
                numbers.append(
                    await session.scalar(
                        select(func.count()).select_from(model).where(model.workspace_id == tenant.workspace_id)
                    )
                    or 0
                )
        return Saved(*numbers)

    return count
