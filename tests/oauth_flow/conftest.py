"""Helpers of the OAuth connect-flow tests: a mailbox of the mail world that is also a user of the local
authorization server, and the browser's part of the flow (authorize URL -> consent -> callback)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import OAUTH_FRONTEND, Tenant
from tests.servers.mail_world import BASE_DOMAIN, MailWorld
from tests.servers.oauth_server import OAuthTestServer

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
