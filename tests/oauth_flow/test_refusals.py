"""What the callback refuses: a narrower grant, a replayed, tampered, expired or other provider's state, a
state of another workspace (the callback is public: the state alone binds it), and the provider-specific
hints of a failing check reaching the attempt."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.imap.oauth import IMAP_DISABLED_HINT
from nimbus_api.kit.db import utcnow
from nimbus_api.models import OAuthAttempt
from nimbus_api.oauth.providers import MICROSOFT_IMAP_SCOPE, MICROSOFT_SMTP_SCOPE
from nimbus_api.smtp.classify import TENANT_SMTP_AUTH_DISABLED_HINT
from tests.conftest import Tenant, TenantFactory
from tests.oauth_flow.conftest import FRONTEND_URL, consent, landed, new_mailbox, run_flow
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer


async def _accounts(tenant: Tenant) -> list[dict[str, object]]:
    return list((await tenant.client.get("/v1/email-accounts")).json()["data"])


async def test_a_narrower_grant_is_refused_with_a_clear_code_and_nothing_is_saved(
    tenant: Tenant, http: httpx.AsyncClient, oauth: OAuthTestServer, mail_world: MailWorld
) -> None:
    email = new_mailbox(mail_world, oauth)
    oauth.granted_scope = "openid email profile"  # the person unticked the mail permission
    revokes = oauth.counters["revoke"]
    flow = await run_flow(tenant, http, oauth, email)
    assert flow.landed["error"] == "oauth.scope_missing" and "account_id" not in flow.landed
    attempt = (await tenant.client.get(f"/v1/oauth/attempts/{flow.landed['oauth_attempt']}")).json()
    assert (attempt["status"], attempt["error_code"], attempt["account_id"]) == ("failed", "oauth.scope_missing", None)
    assert "https://mail.google.com/" in attempt["error_detail"]
    assert await _accounts(tenant) == []
    assert oauth.counters["revoke"] == revokes + 1  # the refused grant was given back


async def test_a_state_is_used_once_and_only_as_issued(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email = new_mailbox(mail_world, oauth)
    r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL, "login_hint": email})
    callback = await consent(oauth, r.json()["authorize_url"])
    path, _, query = callback.partition("?")

    for bad in (
        f"{path}?{query.replace('state=', 'state=x')}",  # tampered
        f"{path}?code=abc",  # no state at all
        f"/v1/oauth/microsoft/callback?{query}",  # another provider's callback
    ):
        r = await http.get(bad)
        assert r.status_code == 400 and r.json()["code"] == "oauth.state_invalid", (bad, r.text)
    first = landed(await http.get(callback))
    assert "account_id" in first
    replay = await http.get(callback)  # the same state again
    assert replay.status_code == 400 and replay.json()["code"] == "oauth.state_invalid"
    assert len(await _accounts(tenant)) == 1

    # an expired state is refused too
    r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL, "login_hint": email})
    late = await consent(oauth, r.json()["authorize_url"])
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(OAuthAttempt)
            .where(OAuthAttempt.id == uuid.UUID(r.json()["attempt_id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = await http.get(late)
    assert r.status_code == 400 and r.json()["code"] == "oauth.state_invalid"


async def test_a_state_of_workspace_a_connects_in_a_only_and_b_cannot_read_the_attempt(
    make_tenant: TenantFactory, http: httpx.AsyncClient, oauth: OAuthTestServer, mail_world: MailWorld
) -> None:
    a, b = await make_tenant(), await make_tenant()
    email = new_mailbox(mail_world, oauth)
    r = await a.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL, "login_hint": email})
    callback = await consent(oauth, r.json()["authorize_url"])
    # the callback carries no key: B's key on it changes nothing, the state names A's workspace
    back = landed(await b.client.get(callback))
    assert [x["id"] for x in await _accounts(a)] == [back["account_id"]]
    assert await _accounts(b) == []
    r = await b.client.get(f"/v1/oauth/attempts/{back['oauth_attempt']}")
    assert r.status_code == 404 and r.json()["code"] == "oauth_attempt.not_found"
    r = await b.client.post(f"/v1/email-accounts/{back['account_id']}/reauthorize", json={"frontend_url": FRONTEND_URL})
    assert r.status_code == 404 and r.json()["code"] == "email_account.not_found"
    assert (await a.client.get(f"/v1/oauth/attempts/{back['oauth_attempt']}")).status_code == 200


async def test_the_callback_without_any_state_is_a_problem_not_a_redirect(http: httpx.AsyncClient) -> None:
    r = await http.get(f"/v1/oauth/google/callback?state={secrets.token_urlsafe(16)}&code=x")
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "oauth.state_invalid"


async def test_microsofts_tenant_smtp_auth_hint_reaches_the_failing_check(
    tenant: Tenant, http: httpx.AsyncClient, oauth: OAuthTestServer, mail_world: MailWorld
) -> None:
    email = new_mailbox(mail_world, oauth, hosted_domain=None)
    # the mail world's SMTP refuses the mailbox's token, as a tenant with SMTP AUTH disabled does
    mail_world.smtp.oauth_failure_reply = (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."
    )
    mail_world.smtp.oauth_refused_users.add(email.lower())
    try:
        flow = await run_flow(tenant, http, oauth, email, provider="microsoft")
    finally:
        mail_world.smtp.oauth_failure_reply = None
        mail_world.smtp.oauth_refused_users.discard(email.lower())
    query = flow.authorize["authorize_url"]
    assert "offline_access" in query and "SMTP.Send" in query and "IMAP.AccessAsUser.All" in query
    assert flow.landed["error"] == "smtp.auth_failed"
    attempt = (await tenant.client.get(f"/v1/oauth/attempts/{flow.landed['oauth_attempt']}")).json()
    smtp = next(c for c in attempt["verification"]["checks"] if c["name"] == "smtp")
    assert smtp["hint"] == TENANT_SMTP_AUTH_DISABLED_HINT
    assert TENANT_SMTP_AUTH_DISABLED_HINT in attempt["error_detail"]
    assert await _accounts(tenant) == []
    assert {MICROSOFT_SMTP_SCOPE, MICROSOFT_IMAP_SCOPE} <= set(oauth.tokens[next(reversed(oauth.tokens))].scope.split())


async def test_gmails_imap_disabled_refusal_reaches_the_failing_imap_check_with_its_hint(
    tenant: Tenant, http: httpx.AsyncClient, oauth: OAuthTestServer, mail_world: MailWorld
) -> None:
    """Dovecot refuses the live token with Gmail's "not enabled for IMAP use" text (tests/servers/dovecot.py):
    the attempt fails on its IMAP check, which carries the hint; SMTP took the same token; nothing is saved."""
    email = new_mailbox(mail_world, oauth)
    oauth.add_user(email, "Olive Auth", hosted_domain="example.test", imap_disabled=True)
    checked, revokes = len(oauth.introspections), oauth.counters["revoke"]
    flow = await run_flow(tenant, http, oauth, email)
    assert flow.landed["error"] == "imap.auth_failed" and "account_id" not in flow.landed
    attempt = (await tenant.client.get(f"/v1/oauth/attempts/{flow.landed['oauth_attempt']}")).json()
    assert (attempt["status"], attempt["error_code"], attempt["account_id"]) == ("failed", "imap.auth_failed", None)
    checks = {c["name"]: c for c in attempt["verification"]["checks"]}
    assert attempt["verification"]["check"] == "imap"
    assert checks["smtp"]["status"] == "passed"  # the token itself is good: only IMAP is off
    imap = checks["imap"]
    assert (imap["status"], imap["code"], imap["hint"]) == ("failed", "imap.auth_failed", IMAP_DISABLED_HINT)
    assert imap["data"]["oauth"] is True and imap["data"]["status"] is None  # no token-failure challenge
    assert checks["roundtrip"]["status"] == "skipped"
    assert IMAP_DISABLED_HINT in attempt["error_detail"]
    # both servers found the token active: the refusal is the account's, not the token's
    assert {(caller, ok) for caller, who, ok in oauth.introspections[checked:] if who == email} == {
        ("imap", True),
        ("smtp", True),
    }
    assert await _accounts(tenant) == []
    assert oauth.counters["revoke"] == revokes + 1  # the unused grant was given back
