"""The local OAuth stack itself: authlib's server issues tokens that the mail world's Dovecot (oauth2 passdb,
introspection) and SMTP server (XOAUTH2/OAUTHBEARER) accept, and refuse once expired, revoked or mis-scoped.

Clients here are the standard library's imaplib/smtplib, in a thread: they test the servers, not the product.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import json
import secrets
import smtplib
import ssl

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.servers.mail_world import BASE_DOMAIN, MailWorld
from tests.servers.oauth_server import GMAIL_SCOPE, AuthorizeResult, OAuthTestServer, pkce_pair

REDIRECT = "http://127.0.0.1:9/callback"


@pytest.fixture
def client_id(oauth_defaults: OAuthTestServer) -> str:
    cid = f"client-{secrets.token_hex(4)}"
    oauth_defaults.add_client(cid, "client-secret", [REDIRECT])
    return cid


def _mailbox(world: MailWorld, oauth: OAuthTestServer) -> str:
    email = f"oauth-{secrets.token_hex(4)}@{BASE_DOMAIN}"
    world.add_mailbox(email)
    oauth.add_user(email, "Olive Auth", hosted_domain=BASE_DOMAIN)
    return email


def _xoauth2(email: str, token: str) -> str:
    return f"user={email}\x01auth=Bearer {token}\x01\x01"


def _imap_login(world: MailWorld, email: str, token: str) -> str:
    context = ssl.create_default_context(cafile=str(world.certs.ca_file))
    with imaplib.IMAP4_SSL("127.0.0.1", world.dovecot.ports.imaps, ssl_context=context) as imap:
        typ, _ = imap.authenticate("XOAUTH2", lambda _challenge: _xoauth2(email, token).encode())
        status, data = imap.select("INBOX")
        return f"{typ} {status} {data}"


def _smtp(world: MailWorld, mechanism: str, email: str, token: str) -> tuple[int, bytes, list[tuple[int, bytes]]]:
    context = ssl.create_default_context(cafile=str(world.certs.ca_file))
    with smtplib.SMTP("127.0.0.1", world.smtp.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=context)
        smtp.ehlo("client.test")
        if mechanism == "XOAUTH2":
            blob = _xoauth2(email, token)
        else:
            blob = f"n,a={email},\x01host=127.0.0.1\x01port={world.smtp.port}\x01auth=Bearer {token}\x01\x01"
        code, reply = smtp.docmd("AUTH", f"{mechanism} {base64.b64encode(blob.encode()).decode()}")
        steps: list[tuple[int, bytes]] = []
        if code == 334:
            steps.append((code, reply))
            code, reply = smtp.docmd("")
        if code == 235:
            smtp.sendmail(email, [email], f"From: {email}\r\nTo: {email}\r\nSubject: oauth\r\n\r\nhi\r\n")
        return code, reply, steps


async def test_tokens_id_token_refresh_and_revocation(oauth_defaults: OAuthTestServer, client_id: str) -> None:
    oauth = oauth_defaults
    oauth.add_user("ida@example.test", "Ida Token", hosted_domain="example.test")
    verifier, challenge = pkce_pair()

    async def authorize(state: str) -> AuthorizeResult:
        return await asyncio.to_thread(
            oauth.authorize,
            client_id=client_id,
            redirect_uri=REDIRECT,
            login_hint="ida@example.test",
            state=state,
            code_challenge=challenge,
        )

    result = await authorize("st-1")
    assert result.code and result.state == "st-1"
    async with httpx.AsyncClient() as http:
        # PKCE is required: no verifier, no token
        missing = await http.post(
            oauth.token_url,
            data={"grant_type": "authorization_code", "code": result.code, "redirect_uri": REDIRECT},
            auth=(client_id, "client-secret"),
        )
        assert missing.status_code == 400
        result = await authorize("st-2")
        reply = await http.post(
            oauth.token_url,
            data={
                "grant_type": "authorization_code",
                "code": result.code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(client_id, "client-secret"),
        )
        assert reply.status_code == 200, reply.text
        tokens = reply.json()
        claims = jwt.decode(tokens["id_token"], RSAKey.import_key(oauth.public_jwk)).claims
        assert (claims["email"], claims["name"], claims["hd"], claims["aud"]) == (
            "ida@example.test",
            "Ida Token",
            "example.test",
            client_id,
        )
        info = (await http.post(oauth.introspect_url, data={"token": tokens["access_token"]})).json()
        assert info["active"] is True and info["username"] == "ida@example.test" and info["scope"] == GMAIL_SCOPE
        refreshed = await asyncio.to_thread(oauth.refresh, client_id, tokens["refresh_token"])
        assert refreshed.status_code == 200 and refreshed.json()["access_token"] != tokens["access_token"]
        revoked = await http.post(
            oauth.revoke_url, data={"token": tokens["refresh_token"]}, auth=(client_id, "client-secret")
        )
        assert revoked.status_code == 200
        again = await asyncio.to_thread(oauth.refresh, client_id, tokens["refresh_token"])
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        assert not (await http.post(oauth.introspect_url, data={"token": tokens["access_token"]})).json()["active"]
    no_pkce = await asyncio.to_thread(
        oauth.authorize, client_id=client_id, redirect_uri=REDIRECT, login_hint="ida@example.test", state="p"
    )
    assert no_pkce.error == "invalid_request" and no_pkce.code is None and no_pkce.state == "p"
    denied = await asyncio.to_thread(
        oauth.authorize,
        client_id=client_id,
        redirect_uri=REDIRECT,
        login_hint="ida@example.test",
        state="s",
        code_challenge=challenge,
        deny=True,
    )
    assert denied.error == "access_denied" and denied.state == "s"


async def test_dovecot_accepts_a_token_and_refuses_it_expired_or_revoked(
    mail_world: MailWorld, oauth_defaults: OAuthTestServer, client_id: str
) -> None:
    email = _mailbox(mail_world, oauth_defaults)
    token = (await asyncio.to_thread(oauth_defaults.issue_tokens, client_id, email))["access_token"]
    assert (await asyncio.to_thread(_imap_login, mail_world, email, token)).startswith("OK OK")
    oauth_defaults.expire_access_tokens()
    with pytest.raises(imaplib.IMAP4.error):
        await asyncio.to_thread(_imap_login, mail_world, email, token)
    fresh = (await asyncio.to_thread(oauth_defaults.issue_tokens, client_id, email))["access_token"]
    oauth_defaults.revoke_user(email)
    with pytest.raises(imaplib.IMAP4.error):
        await asyncio.to_thread(_imap_login, mail_world, email, fresh)
    oauth_defaults.granted_scope = "openid email"
    wrong = (await asyncio.to_thread(oauth_defaults.issue_tokens, client_id, email))["access_token"]
    with pytest.raises(imaplib.IMAP4.error):
        await asyncio.to_thread(_imap_login, mail_world, email, wrong)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_smtp_accepts_a_token_and_answers_like_gmail_otherwise(
    mail_world: MailWorld, oauth_defaults: OAuthTestServer, client_id: str, mechanism: str
) -> None:
    email = _mailbox(mail_world, oauth_defaults)
    token = (await asyncio.to_thread(oauth_defaults.issue_tokens, client_id, email))["access_token"]
    sent = len(mail_world.smtp.messages)
    code, _, _ = await asyncio.to_thread(_smtp, mail_world, mechanism, email, token)
    assert code == 235 and len(mail_world.smtp.messages) == sent + 1
    oauth_defaults.expire_access_tokens()
    code, reply, steps = await asyncio.to_thread(_smtp, mail_world, mechanism, email, token)
    assert code == 535 and reply.startswith(b"5.7.8")
    status = json.loads(base64.b64decode(steps[0][1]))
    assert status["status"] == ("401" if mechanism == "XOAUTH2" else "invalid_token")
    assert status["scope"] == GMAIL_SCOPE
