"""The product's XOAUTH2/OAUTHBEARER adapters (smtp.connection, imap.session) with real tokens from the local
OAuth server, against the mail world's aiosmtpd server and real Dovecot (both check tokens by introspection)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import replace

import pytest

from nimbus_api.imap import ImapError, ImapServer, imap_session
from nimbus_api.imap.oauth import IMAP_DISABLED_HINT
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.egress import EgressPolicy
from nimbus_api.kit.net import NetContext, make_tls_context
from nimbus_api.smtp import SmtpError, SmtpServer
from nimbus_api.smtp.connection import close_gracefully, connect
from nimbus_api.smtp.transaction import transmit
from tests.servers.mail_world import BASE_DOMAIN, IMAP_HOST, SMTP_HOST, MailWorld
from tests.servers.oauth_server import GMAIL_IMAP_DISABLED, OAuthTestServer

REDIRECT = "http://127.0.0.1:9/callback"


@pytest.fixture
def net(mail_world: MailWorld) -> NetContext:
    return NetContext(
        policy=EgressPolicy.from_entries(["127.0.0.0/8", ":1024-65535"]),
        resolver=mail_world.dns.resolver(2.0),
        tls=make_tls_context(mail_world.certs.ca_file),
        connect_timeout=3.0,
        command_timeout=5.0,
    )


@pytest.fixture
def account(mail_world: MailWorld, oauth_defaults: OAuthTestServer) -> tuple[str, str]:
    cid = f"client-{secrets.token_hex(4)}"
    oauth_defaults.add_client(cid, "client-secret", [REDIRECT])
    email = f"oauth-{secrets.token_hex(4)}@{BASE_DOMAIN}"
    mail_world.add_mailbox(email)
    oauth_defaults.add_user(email, "Olive Auth")
    return cid, email


async def _token(oauth: OAuthTestServer, cid: str, email: str) -> str:
    return str((await asyncio.to_thread(oauth.issue_tokens, cid, email))["access_token"])


def _smtp(world: MailWorld, email: str, token: str) -> SmtpServer:
    return SmtpServer(SMTP_HOST, world.smtp.port, "starttls", email, Secret(token), auth_mechanism="oauth2")


def _imap(world: MailWorld, email: str, token: str) -> ImapServer:
    return ImapServer(IMAP_HOST, world.dovecot.ports.imaps, "ssl", email, Secret(token), auth_mechanism="oauth2")


def _product_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the product logged (the test servers' own debug logs are theirs: aiosmtpd, httpx, werkzeug, authlib)."""
    return "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("mail.log", "http", "werkzeug", "authlib"))
    )


def _assert_hidden(token: str, *texts: str) -> None:
    for text in texts:
        assert token not in text
        assert token[5:20] not in text


@pytest.mark.parametrize("offered", [None, ["XOAUTH2", "PLAIN", "LOGIN"]])
async def test_smtp_logs_in_with_a_token_and_sends(
    mail_world: MailWorld,
    oauth_defaults: OAuthTestServer,
    account: tuple[str, str],
    net: NetContext,
    offered: list[str] | None,
) -> None:
    cid, email = account
    token = await _token(oauth_defaults, cid, email)
    mail_world.smtp.auth_mechanisms = offered
    try:
        conn = await connect(_smtp(mail_world, email, token), net)
        try:
            assert conn.auth_mechanism == ("XOAUTH2" if offered else "OAUTHBEARER")
            sent = len(mail_world.smtp.messages)
            message = f"From: {email}\r\nTo: {email}\r\nSubject: xoauth2\r\n\r\nhello\r\n".encode()
            await transmit(conn, sender=email, recipients=[email], message=message)
            assert len(mail_world.smtp.messages) == sent + 1
        finally:
            await close_gracefully(conn)
    finally:
        mail_world.smtp.auth_mechanisms = None
    assert mail_world.smtp.oauth_attempts[-1] == (conn.auth_mechanism, email, True)


async def test_smtp_expired_revoked_and_wrong_scope_tokens_are_refused_with_the_status(
    mail_world: MailWorld,
    oauth_defaults: OAuthTestServer,
    account: tuple[str, str],
    net: NetContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cid, email = account
    token = await _token(oauth_defaults, cid, email)
    oauth_defaults.expire_access_tokens()
    with pytest.raises(SmtpError) as expired:
        await connect(_smtp(mail_world, email, token), net)
    assert expired.value.code == "smtp.auth_failed" and expired.value.oauth_status == "invalid_token"
    assert expired.value.reply is not None and expired.value.reply.code == 535
    _assert_hidden(token, str(expired.value), repr(expired.value), expired.value.detail, _product_log(caplog))

    mail_world.smtp.auth_mechanisms = ["XOAUTH2"]
    try:
        revoked = await _token(oauth_defaults, cid, email)
        oauth_defaults.revoke_user(email)
        with pytest.raises(SmtpError) as refused:
            await connect(_smtp(mail_world, email, revoked), net)
        assert refused.value.code == "smtp.auth_failed" and refused.value.oauth_status == "401"
        oauth_defaults.granted_scope = "openid email"
        wrong = await _token(oauth_defaults, cid, email)
        with pytest.raises(SmtpError) as scoped:
            await connect(_smtp(mail_world, email, wrong), net)
        assert scoped.value.oauth_status == "401"
        _assert_hidden(revoked, str(refused.value), repr(refused.value), _product_log(caplog))
        _assert_hidden(wrong, str(scoped.value), repr(scoped.value), _product_log(caplog))
    finally:
        mail_world.smtp.auth_mechanisms = None


async def test_smtp_without_oauth_mechanisms_or_tls(
    mail_world: MailWorld, oauth_defaults: OAuthTestServer, account: tuple[str, str], net: NetContext
) -> None:
    cid, email = account
    token = await _token(oauth_defaults, cid, email)
    mail_world.smtp.auth_mechanisms = ["PLAIN", "LOGIN"]
    try:
        with pytest.raises(SmtpError) as unsupported:
            await connect(_smtp(mail_world, email, token), net)
    finally:
        mail_world.smtp.auth_mechanisms = None
    assert unsupported.value.code == "smtp.auth_unsupported" and "XOAUTH2" in unsupported.value.detail
    plain = replace(_smtp(mail_world, email, token), mode="none", allow_plaintext_auth=True)
    with pytest.raises(SmtpError) as cleartext:
        await connect(plain, net)
    assert cleartext.value.code == "smtp.plaintext_auth_refused"


async def test_imap_xoauth2_login_against_dovecot_then_select(
    mail_world: MailWorld, oauth_defaults: OAuthTestServer, account: tuple[str, str], net: NetContext
) -> None:
    cid, email = account
    token = await _token(oauth_defaults, cid, email)
    before = oauth_defaults.counters["introspect"]
    async with imap_session(_imap(mail_world, email, token), net) as session:
        status = await session.select("INBOX")
        assert status.uidvalidity > 0
    assert oauth_defaults.counters["introspect"] > before  # Dovecot asked the OAuth server


async def test_imap_refused_tokens_say_so_and_stay_hidden(
    mail_world: MailWorld,
    oauth_defaults: OAuthTestServer,
    account: tuple[str, str],
    net: NetContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cid, email = account
    token = await _token(oauth_defaults, cid, email)
    oauth_defaults.expire_access_tokens()
    with pytest.raises(ImapError) as expired:
        async with imap_session(_imap(mail_world, email, token), net):
            pass
    assert expired.value.code == "imap.auth_failed" and expired.value.data["oauth"] is True
    assert expired.value.data["status"] is not None, "the status of Dovecot's failure challenge is read"
    _assert_hidden(token, str(expired.value), repr(expired.value), str(expired.value.server_text), _product_log(caplog))
    oauth_defaults.granted_scope = "openid email"
    wrong = await _token(oauth_defaults, cid, email)
    with pytest.raises(ImapError) as scoped:
        async with imap_session(_imap(mail_world, email, wrong), net):
            pass
    assert scoped.value.code == "imap.auth_failed"
    oauth_defaults.granted_scope = None
    revoked = await _token(oauth_defaults, cid, email)
    oauth_defaults.revoke_user(email)
    with pytest.raises(ImapError) as refused:
        async with imap_session(_imap(mail_world, email, revoked), net):
            pass
    assert refused.value.code == "imap.auth_failed"
    cleartext = replace(_imap(mail_world, email, token), mode="none", port=mail_world.dovecot.ports.imap)
    with pytest.raises(ImapError) as plain:
        async with imap_session(cleartext, net):
            pass
    assert plain.value.code == "imap.plaintext_auth_refused"


@pytest.mark.parametrize("refusal", [True, "IMAP is disabled for this account"])
async def test_gmail_with_imap_turned_off_refuses_a_live_token_with_the_hint(
    mail_world: MailWorld,
    oauth_defaults: OAuthTestServer,
    account: tuple[str, str],
    net: NetContext,
    caplog: pytest.LogCaptureFixture,
    refusal: bool | str,
) -> None:
    """Dovecot refuses the token with the account's refusal text (``nologin`` with the introspection's
    ``reason``), as Gmail does with IMAP turned off; the same token still sends over SMTP."""
    caplog.set_level(logging.DEBUG)
    cid, email = account
    oauth_defaults.add_user(email, "Olive Auth", imap_disabled=refusal)
    token = await _token(oauth_defaults, cid, email)
    with pytest.raises(ImapError) as refused:
        async with imap_session(_imap(mail_world, email, token), net):
            pass
    error = refused.value
    assert error.code == "imap.auth_failed" and error.data["oauth"] is True
    assert error.data["hint"] == IMAP_DISABLED_HINT
    assert "IMAP is disabled" in str(error.detail)
    expected = GMAIL_IMAP_DISABLED if refusal is True else refusal
    assert error.server_text is not None and expected in error.server_text
    _assert_hidden(token, str(error), repr(error), str(error.server_text), _product_log(caplog))
    conn = await connect(_smtp(mail_world, email, token), net)  # only IMAP is off
    await close_gracefully(conn)
    assert mail_world.smtp.oauth_attempts[-1] == (conn.auth_mechanism, email, True)

    oauth_defaults.add_user(email, "Olive Auth")  # IMAP turned back on: the same token logs in
    async with imap_session(_imap(mail_world, email, token), net) as session:
        assert (await session.select("INBOX")).uidvalidity > 0


async def test_a_microsoft_tenant_without_smtp_auth_gets_its_hint_from_a_real_refusal(
    mail_world: MailWorld, oauth_defaults: OAuthTestServer, account: tuple[str, str], net: NetContext
) -> None:
    from nimbus_api.smtp.classify import TENANT_SMTP_AUTH_DISABLED_HINT

    cid, email = account
    token = await _token(oauth_defaults, cid, email)
    oauth_defaults.expire_access_tokens()
    mail_world.smtp.oauth_failure_reply = (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."
    )
    try:
        with pytest.raises(SmtpError) as refused:
            await connect(_smtp(mail_world, email, token), net)
    finally:
        mail_world.smtp.oauth_failure_reply = None
    assert refused.value.code == "smtp.auth_failed" and refused.value.hint == TENANT_SMTP_AUTH_DISABLED_HINT


def test_provider_hints_are_read_from_the_reply() -> None:
    from nimbus_api.smtp.classify import TENANT_SMTP_AUTH_DISABLED_HINT, reply_hint

    text = "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/x"
    assert reply_hint(text) == TENANT_SMTP_AUTH_DISABLED_HINT
    assert reply_hint("Username and Password not accepted") is None
