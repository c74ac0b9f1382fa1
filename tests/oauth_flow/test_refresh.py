"""Token refresh on the real stack: a send and a verification meet an expired token (the mail world's
servers refuse it), refresh it once and go through; two refreshers at once refresh once; a revoked grant
disables the account (``reauthorization_required``), emits ``account.disabled``, and the next send is not
tried until a person re-authorizes, which restores the same account."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.models import EmailAccount, Enrollment, OAuthGrant
from nimbus_api.oauth import tokens
from nimbus_api.oauth.tasks import refresh_due
from nimbus_api.sending.sender import SenderDeps, run_inbox
from tests.conftest import Tenant
from tests.oauth_flow.conftest import FRONTEND_URL, connected, consent, landed, warmed
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer


async def _grant(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> OAuthGrant:
    async with sessionmaker() as session:
        return await session.get_one(OAuthGrant, account_id)


async def test_a_send_with_an_expired_token_refreshes_once_and_goes_through(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    campaigns: Campaigns,
    deps: SenderDeps,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world)
    await warmed(sessionmaker, account_id)
    campaign_id = await campaigns.campaign([account_id], [f"lead{i}@example.org" for i in range(3)])
    await campaigns.dispatch(campaign_id)
    version = (await _grant(sessionmaker, account_id)).token_version
    oauth.expire_access_tokens()  # the servers now refuse the stored token; our expiry says it is valid
    refreshes, logins = oauth.counters["refresh_token"], len(mail_world.smtp.oauth_attempts)

    report = await run_inbox(deps, account_id, max_seconds=20)

    assert report.outcomes["sent"] == 3 and report.stopped_reason is None, report
    assert oauth.counters["refresh_token"] == refreshes + 1
    mine = [accepted for _, user, accepted in mail_world.smtp.oauth_attempts[logins:] if user == email]
    assert mine == [False, True]  # refused with the old token, logged in with the new one, once
    assert (await _grant(sessionmaker, account_id)).token_version == version + 1
    account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
    assert account["disabled_at"] is None and account["auth_method"] == "oauth2"


async def test_a_verification_with_an_expired_token_refreshes_once(
    tenant: Tenant, http: httpx.AsyncClient, oauth: OAuthTestServer, mail_world: MailWorld
) -> None:
    _, account_id = await connected(tenant, http, oauth, mail_world)
    oauth.expire_access_tokens()
    refreshes = oauth.counters["refresh_token"]
    r = await tenant.client.post(f"/v1/email-accounts/{account_id}/verify")
    assert r.status_code == 200 and r.json()["status"] == "passed", r.text
    assert oauth.counters["refresh_token"] == refreshes + 1


async def test_two_refreshers_at_once_refresh_once_and_share_the_new_token(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    settings: Settings,
) -> None:
    _, account_id = await connected(tenant, http, oauth, mail_world)
    refused = (await _grant(sessionmaker, account_id)).token_version
    oauth.expire_access_tokens()
    refreshes = oauth.counters["refresh_token"]

    async def refresher(name: str) -> tuple[int, str]:
        async with sessionmaker() as session, session.begin():
            token = await tokens.current(
                session,
                vault,
                settings,
                account_id,
                actor=Actor.system(name),
                purpose="send",
                refused_version=refused,
            )
            assert token is not None
            return token.version, token.secret.reveal()

    first, second = await asyncio.gather(refresher("worker_a"), refresher("worker_b"))
    assert oauth.counters["refresh_token"] == refreshes + 1
    assert first == second and first[0] == refused + 1
    assert oauth.token_record(first[1]) is not None  # the one refresh's token, which the server issued


async def test_the_cron_refreshes_tokens_about_to_expire(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    settings: Settings,
) -> None:
    oauth.access_token_lifetime = 60  # under the 300 s margin: due at once
    _, account_id = await connected(tenant, http, oauth, mail_world)
    oauth.access_token_lifetime = 3600
    refreshes = oauth.counters["refresh_token"]
    counts = await refresh_due(sessionmaker, vault, settings)
    assert counts["refreshed"] >= 1 and oauth.counters["refresh_token"] >= refreshes + 1
    grant = await _grant(sessionmaker, account_id)
    assert grant.token_version == 2 and (grant.access_expires_at - grant.refreshed_at).total_seconds() > 3000  # type: ignore[operator]
    again = oauth.counters["refresh_token"]
    await refresh_due(sessionmaker, vault, settings)
    assert oauth.counters["refresh_token"] == again  # nothing due any more


async def test_a_revoked_grant_needs_reauthorization_and_reauthorize_restores_the_account(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    campaigns: Campaigns,
    deps: SenderDeps,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world)
    await warmed(sessionmaker, account_id)
    campaign_id = await campaigns.campaign([account_id], ["r1@example.org", "r2@example.org"])
    await campaigns.dispatch(campaign_id)
    oauth.revoke_user(email)  # consent withdrawn: every token dies, a refresh answers invalid_grant
    refreshes = oauth.counters["refresh_token"]

    report = await run_inbox(deps, account_id, max_seconds=20)

    assert report.stopped_reason == "smtp.auth_failed" and report.outcomes["sent"] == 0, report
    assert oauth.counters["refresh_token"] == refreshes + 1
    account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
    assert account["disabled_reason"] == "reauthorization_required" and account["disabled_at"]
    disabled = (await tenant.client.get("/v1/events", params={"type": "account.disabled"})).json()["data"]
    assert [
        (e["payload"]["data"]["account_id"], e["payload"]["data"]["reason"], e["payload"]["data"]["by"])
        for e in disabled
    ] == [(str(account_id), "reauthorization_required", "oauth")]
    async with sessionmaker() as session:
        enrollments = list(await session.scalars(select(Enrollment).where(Enrollment.campaign_id == campaign_id)))
    assert all(e.status == "active" and e.account_id is None for e in enrollments)  # handed back, not lost
    assert await campaigns.messages(campaign_id) == []

    # the next send is not tried: no login, no refresh
    logins = len(mail_world.smtp.oauth_attempts)
    later = await run_inbox(deps, account_id, max_seconds=5)
    assert later.stopped_reason == "inbox not sending"
    assert (len(mail_world.smtp.oauth_attempts), oauth.counters["refresh_token"]) == (logins, refreshes + 1)
    r = await tenant.client.post(f"/v1/email-accounts/{account_id}/verify")
    assert r.json()["code"] == "oauth.reauthorization_required", r.text
    assert oauth.counters["refresh_token"] == refreshes + 1

    # a person re-authorizes: a new URL whose callback gives the same account new tokens
    r = await tenant.client.post(f"/v1/email-accounts/{account_id}/reauthorize", json={"frontend_url": FRONTEND_URL})
    assert r.status_code == 201, r.text
    assert f"login_hint={email.replace('@', '%40')}" in r.json()["authorize_url"]
    back = landed(await http.get(await consent(oauth, r.json()["authorize_url"])))
    assert back["account_id"] == str(account_id), back
    attempt = (await tenant.client.get(f"/v1/oauth/attempts/{back['oauth_attempt']}")).json()
    assert attempt["reauthorize"] is True and attempt["status"] == "succeeded"
    account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
    assert (account["disabled_at"], account["disabled_reason"], account["auth_method"]) == (None, None, "oauth2")
    listed = (await tenant.client.get("/v1/email-accounts")).json()["data"]
    assert [a["id"] for a in listed] == [str(account_id)]  # the same account, no second one
    r = await tenant.client.post(f"/v1/email-accounts/{account_id}/verify")
    assert r.json()["status"] == "passed", r.text
    async with sessionmaker() as session:
        assert (await session.get_one(EmailAccount, account_id)).disabled_at is None
