"""Helpers of the OAuth connect-flow tests: a mailbox of the mail world that is also a user of the local
authorization server, and the browser's part of the flow (authorize URL -> consent -> callback)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import EmailAccount
from nimbus_api.sending.sender import SenderDeps
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.sync.runner import SyncRunner
from tests.conftest import OAUTH_FRONTEND, Tenant
from tests.sending.conftest import PUBLIC, Campaigns
from tests.servers.mail_world import BASE_DOMAIN, MailWorld
from tests.servers.oauth_server import OAuthTestServer
from tests.sync.conftest import config, park_others

FRONTEND_URL = f"{OAUTH_FRONTEND}/inboxes?tab=oauth"


@dataclass
class Flow:
    """One run of the flow: what authorize answered, where the browser landed, and that page's query."""

    authorize: dict[str, Any]
    callback: httpx.Response
    landed: dict[str, str]


def new_mailbox(world: MailWorld, oauth: OAuthTestServer, *, hosted_domain: str | None = BASE_DOMAIN) -> str:
    email = f"oauth-{secrets.token_hex(4)}@{BASE_DOMAIN}"
    world.add_mailbox(email)
    oauth.add_user(email, "Olive Auth", hosted_domain=hosted_domain)
    return email


async def consent(oauth: OAuthTestServer, authorize_url: str) -> str:
    """The browser at the provider: follow the URL, return the callback's path and query."""
    result = await asyncio.to_thread(oauth.follow, authorize_url)
    assert result.location, result
    parts = urlsplit(result.location)
    return f"{parts.path}?{parts.query}"


def landed(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{OAUTH_FRONTEND}/inboxes?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def run_flow(
    tenant: Tenant,
    public: httpx.AsyncClient,
    oauth: OAuthTestServer,
    email: str,
    *,
    provider: str = "google",
    url: str | None = None,
    body: dict[str, Any] | None = None,
) -> Flow:
    r = await tenant.client.post(
        url or f"/v1/oauth/{provider}/authorize", json=body or {"frontend_url": FRONTEND_URL, "login_hint": email}
    )
    assert r.status_code == 201, r.text
    started = r.json()
    callback = await public.get(await consent(oauth, started["authorize_url"]))
    return Flow(started, callback, landed(callback))


@pytest.fixture
def oauth(oauth_defaults: OAuthTestServer) -> OAuthTestServer:
    return oauth_defaults


async def connected(
    tenant: Tenant, public: httpx.AsyncClient, oauth: OAuthTestServer, world: MailWorld, *, provider: str = "google"
) -> tuple[str, uuid.UUID]:
    """A new OAuth account of ``tenant`` (address, id), connected through the whole flow."""
    email = new_mailbox(world, oauth)
    flow = await run_flow(tenant, public, oauth, email, provider=provider)
    assert "account_id" in flow.landed, flow.landed
    return email, uuid.UUID(flow.landed["account_id"])


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[SmtpPool]:
    async with SmtpPool(build_net_context(settings), idle_timeout=5) as p:
        yield p


@pytest.fixture
def deps(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, pool: SmtpPool, settings: Settings
) -> SenderDeps:
    return SenderDeps(
        sessionmaker=sessionmaker, vault=vault, pool=pool, pacer=None, public_url=PUBLIC, settings=settings
    )


@pytest.fixture
def campaigns(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant) -> Campaigns:
    return Campaigns(sessionmaker, tenant)


async def warmed(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> None:
    """Stage 5 and a good score, so the stage does not cap the inbox's sends (``stages.limits``)."""
    async with sessionmaker() as session, session.begin():
        account = await session.get_one(EmailAccount, account_id)
        account.current_stage, account.overall_score = 5, 80.0


def issued_tokens(oauth: OAuthTestServer, email: str) -> set[str]:
    """Every access and refresh token the server issued for ``email`` (what must never leak)."""
    found: set[str] = set()
    for token in oauth.tokens.values():
        if token.email == email.lower():
            found.add(token.access_token)
            if token.refresh_token:
                found.add(token.refresh_token)
    return found


async def lone_sync_runner(
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace_id: uuid.UUID,
    *,
    net: Any,
    vault: Vault,
    settings: Settings,
) -> SyncRunner:
    """A sync runner that polls only this workspace's new OAuth mailbox: the workspace's other mailboxes
    are parked and no other sync worker holds leases."""
    await park_others(sessionmaker, workspace_id)
    async with sessionmaker() as session:
        await session.execute(text("DELETE FROM sync_workers"))
        await session.commit()
    return SyncRunner(
        sessionmaker, net, vault, config(), owner=f"oauth-{secrets.token_hex(4)}", oauth_settings=settings
    )
