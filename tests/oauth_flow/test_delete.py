"""Deleting an OAuth account gives its grant back: after the delete is committed, the refresh token is
revoked at the provider's revocation endpoint (Google: the whole grant dies, at the real authorization
server), best effort: a failing endpoint never fails nor holds up the delete; Microsoft has no endpoint,
so nothing is decrypted nor called."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import CredentialAccess, EmailAccount
from tests.conftest import OAUTH_CLIENTS, Tenant
from tests.oauth_flow.conftest import connected
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer, Token


def _grant(oauth: OAuthTestServer, email: str) -> list[Token]:
    return [t for t in oauth.tokens.values() if t.email == email.lower()]


async def _purposes(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> list[str]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(select(CredentialAccess.purpose).where(CredentialAccess.account_id == account_id))
        )


async def _gone(tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> None:
    assert (await tenant.client.get(f"/v1/email-accounts/{account_id}")).status_code == 404
    async with sessionmaker() as session:
        assert await session.get(EmailAccount, account_id) is None


async def test_deleting_a_google_account_revokes_its_grant_at_the_provider(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world)
    tokens = _grant(oauth, email)
    assert tokens and not any(t.revoked or t.refresh_revoked for t in tokens)
    refresh_token = tokens[0].refresh_token
    assert refresh_token is not None
    revokes = oauth.counters["revoke"]

    r = await tenant.client.delete(f"/v1/email-accounts/{account_id}")

    assert r.status_code == 204, r.text
    await _gone(tenant, sessionmaker, account_id)
    assert oauth.counters["revoke"] == revokes + 1
    assert all(t.revoked and t.refresh_revoked for t in _grant(oauth, email))  # the whole grant
    refused = oauth.refresh(OAUTH_CLIENTS["google"][0], refresh_token)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert await _purposes(sessionmaker, account_id) == ["oauth_revoke"]  # the one decrypt, audited


async def test_a_failing_revocation_endpoint_never_fails_the_delete(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world)
    revokes = oauth.counters["revoke"]
    oauth.revoke_status = 503

    r = await tenant.client.delete(f"/v1/email-accounts/{account_id}")

    assert r.status_code == 204, r.text
    await _gone(tenant, sessionmaker, account_id)
    assert oauth.counters["revoke"] == revokes + 1  # tried once, after the commit
    assert not any(t.revoked for t in _grant(oauth, email))


async def test_deleting_an_unknown_or_a_password_account_revokes_nothing(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, account_id = await connected(tenant, http, oauth, mail_world)
    revokes = oauth.counters["revoke"]
    other = (await tenant.client.post("/v1/email-accounts", json=mail_world.account_payload())).json()["id"]
    assert (await tenant.client.delete(f"/v1/email-accounts/{uuid.uuid4()}")).status_code == 404
    r = await tenant.client.delete(f"/v1/email-accounts/{other}")  # a password account: nothing to revoke
    assert r.status_code == 204, r.text
    assert oauth.counters["revoke"] == revokes
    assert (await tenant.client.get(f"/v1/email-accounts/{account_id}")).status_code == 200


async def test_deleting_a_microsoft_account_calls_no_revocation_endpoint(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world, provider="microsoft")
    revokes = oauth.counters["revoke"]

    r = await tenant.client.delete(f"/v1/email-accounts/{account_id}")

    assert r.status_code == 204, r.text
    await _gone(tenant, sessionmaker, account_id)
    assert oauth.counters["revoke"] == revokes
    assert await _purposes(sessionmaker, account_id) == []  # nothing decrypted for a call never made
    assert _grant(oauth, email)
