"""The whole connect flow against the real stack: the API's authorize URL, the local authorization server's
consent (code + PKCE S256 + state), the public callback, the XOAUTH2 logins the mail world's SMTP server and
Dovecot check by introspection, and the browser sent back to the frontend."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Credential, CredentialAccess, OAuthGrant
from nimbus_api.oauth.providers import account_provider
from nimbus_api.providers.presets import suggested_daily_limit
from tests.conftest import Tenant
from tests.oauth_flow.conftest import FRONTEND_URL, new_mailbox, run_flow
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import GMAIL_SCOPE, MS_IMAP_SCOPE, MS_SMTP_SCOPE, OAuthTestServer


async def test_connect_saves_an_oauth_account_verified_by_the_real_servers(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email = new_mailbox(mail_world, oauth)
    smtp_logins = len(mail_world.smtp.oauth_attempts)
    flow = await run_flow(tenant, http, oauth, email)

    query = parse_qs(urlsplit(flow.authorize["authorize_url"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert set(query["scope"][0].split()) == {GMAIL_SCOPE, "openid", "email", "profile"}
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/v1/oauth/google/callback"]
    assert query["access_type"] == ["offline"] and query["login_hint"] == [email]

    account_id = flow.landed["account_id"]
    assert flow.landed["oauth_attempt"] == flow.authorize["attempt_id"] and "error" not in flow.landed
    account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
    assert account["email"] == email and account["auth_method"] == "oauth2"
    assert account["provider"] == "google_workspace" and account["daily_send_limit"] == 40
    assert account["from_name"] == "Olive Auth"
    assert account["smtp"]["password_set"] is False and account["imap"]["password_set"] is False
    assert account["last_verification"]["status"] == "passed"
    checks = {c["name"]: c for c in account["last_verification"]["checks"]}
    assert checks["smtp"]["data"]["auth_mechanism"] in ("XOAUTH2", "OAUTHBEARER")
    assert {c["status"] for c in checks.values()} == {"passed"}
    # the real servers saw the token: SMTP's XOAUTH2/OAUTHBEARER login and Dovecot's introspection
    assert [a for a in mail_world.smtp.oauth_attempts[smtp_logins:] if a[1] == email and a[2]]

    attempt = (await tenant.client.get(f"/v1/oauth/attempts/{flow.landed['oauth_attempt']}")).json()
    assert (attempt["status"], attempt["account_id"], attempt["email"]) == ("succeeded", account_id, email)
    assert attempt["verification"]["status"] == "passed"

    async with sessionmaker() as session:
        kinds = set(await session.scalars(select(Credential.kind).where(Credential.account_id == account["id"])))
        grant = await session.get_one(OAuthGrant, account["id"])
        audited = set(
            await session.scalars(
                select(CredentialAccess.credential_kind).where(CredentialAccess.account_id == account["id"])
            )
        )
    assert kinds == {"oauth_access_token", "oauth_refresh_token"}
    assert grant.provider == "google" and GMAIL_SCOPE in grant.scope.split()
    assert audited == set()  # the connect used the token it was handed: nothing was decrypted

    # verify again: the stored token is decrypted (audited) and logs in again
    r = await tenant.client.post(f"/v1/email-accounts/{account_id}/verify")
    assert r.status_code == 200 and r.json()["status"] == "passed", r.text
    async with sessionmaker() as session:
        audited = set(
            await session.scalars(select(CredentialAccess.purpose).where(CredentialAccess.account_id == account["id"]))
        )
    assert audited == {"verify"}

    # a PATCH that changes the connection verifies it with the token; a password has no place here
    r = await tenant.client.patch(f"/v1/email-accounts/{account_id}", json={"imap": {"folder": "INBOX"}, "label": "x"})
    assert r.status_code == 200 and r.json()["auth_method"] == "oauth2", r.text
    r = await tenant.client.patch(f"/v1/email-accounts/{account_id}", json={"smtp": {"password": "guess"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "smtp.password", r.text


@pytest.mark.parametrize(
    ("provider", "hosted_domain", "email", "preset", "limit"),
    [
        ("google", "acme.example", "ann@acme.example", "google_workspace", 40),
        ("google", None, "ann@gmail.com", "gmail", 20),
        ("google", None, "ann@googlemail.com", "gmail", 20),
        ("microsoft", None, "ann@contoso.example", "office365", 30),
    ],
)
def test_the_starting_daily_limit_follows_the_kind_of_mailbox(
    provider: str, hosted_domain: str | None, email: str, preset: str, limit: int
) -> None:
    """Google Workspace 40 a day, consumer Gmail (no hosted domain, @gmail.com) 20, Microsoft 365 30."""
    found = account_provider(provider, hosted_domain, email)
    assert (found, suggested_daily_limit(found)) == (preset, limit)


async def test_a_frontend_outside_the_allowlist_is_refused(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": "https://evil.example.com/x"})
    assert r.status_code == 422 and r.json()["code"] == "oauth.frontend_not_allowed", r.text
    r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL})
    assert r.status_code == 201, r.text


IDENTITY = ("openid", "email", "profile")


async def test_a_microsoft_365_mailbox_connects_and_its_token_logs_in_to_smtp_and_imap(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Microsoft's shape end to end: the two mail scopes (SMTP.Send for the SMTP server, IMAP.AccessAsUser.All
    for Dovecot, each checked by introspection), the address from ``preferred_username``, SMTP over STARTTLS
    with XOAUTH2 only (what Office 365 offers), and a new refresh token on every refresh."""
    email = new_mailbox(mail_world, oauth, hosted_domain=None)
    smtp_logins, checked = len(mail_world.smtp.oauth_attempts), len(oauth.introspections)
    mail_world.smtp.auth_mechanisms = ["LOGIN", "XOAUTH2"]  # smtp.office365.com's EHLO
    try:
        flow = await run_flow(tenant, http, oauth, email, provider="microsoft")
    finally:
        mail_world.smtp.auth_mechanisms = None

    query = parse_qs(urlsplit(flow.authorize["authorize_url"]).query)
    assert set(query["scope"][0].split()) == {MS_SMTP_SCOPE, MS_IMAP_SCOPE, "offline_access", *IDENTITY}
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/v1/oauth/microsoft/callback"]
    assert "account_id" in flow.landed, flow.landed
    account = (await tenant.client.get(f"/v1/email-accounts/{flow.landed['account_id']}")).json()
    assert (account["email"], account["auth_method"], account["provider"]) == (email, "oauth2", "office365")
    assert account["daily_send_limit"] == 30 and account["from_name"] == "Olive Auth"
    assert (account["smtp"]["mode"], account["smtp"]["password_set"], account["imap"]["password_set"]) == (
        "starttls",
        False,
        False,
    )
    checks = {c["name"]: c for c in account["last_verification"]["checks"]}
    assert {c["status"] for c in checks.values()} == {"passed"}
    assert checks["smtp"]["data"]["auth_mechanism"] == "XOAUTH2"
    assert [(m, ok) for m, user, ok in mail_world.smtp.oauth_attempts[smtp_logins:] if user == email] == [
        ("XOAUTH2", True)
    ]
    # the real servers checked the Microsoft token: the SMTP server and Dovecot (its oauth2 passdb)
    assert {(caller, ok) for caller, who, ok in oauth.introspections[checked:] if who == email} == {
        ("smtp", True),
        ("imap", True),
    }
    async with sessionmaker() as session:
        grant = await session.get_one(OAuthGrant, account["id"])
    assert grant.provider == "microsoft" and {MS_SMTP_SCOPE, MS_IMAP_SCOPE} <= set(grant.scope.split())

    # a refresh rotates Microsoft's refresh token: the new one is stored, and the next logins use the new token
    oauth.expire_access_tokens()
    refreshes = oauth.counters["refresh_token"]
    r = await tenant.client.post(f"/v1/email-accounts/{account['id']}/verify")
    assert r.status_code == 200 and r.json()["status"] == "passed", r.text
    assert oauth.counters["refresh_token"] == refreshes + 1
    first, rotated = [t.refresh_token for t in oauth.tokens.values() if t.email == email]
    assert first and rotated and first != rotated  # the connect's and the refresh's
    oauth.revoke_refresh_token(first)  # only the rotated one refreshes from here
    oauth.expire_access_tokens()
    r = await tenant.client.post(f"/v1/email-accounts/{account['id']}/verify")
    assert r.status_code == 200 and r.json()["status"] == "passed", r.text
    assert oauth.counters["refresh_token"] == refreshes + 2
