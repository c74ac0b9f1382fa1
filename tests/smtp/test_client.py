"""The SMTP adapter against real aiosmtpd servers on loopback: every error code we can produce locally.

Host names go through the stub DNS of conftest.py (``*.example.test`` -> 127.0.0.1), so these tests
also show the pinning: the client reaches the address our resolver returned, while TLS checks the
certificate against the name (``other.example.test`` fails although the certificate covers 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope

from nimbus_api.kit.crypto import Secret
from nimbus_api.smtp import SmtpError, SmtpServer, auth_failed_hint, connect, send_test_message, transmit
from nimbus_api.smtp.classify import GENERIC_AUTH_HINT, GOOGLE_AUTH_HINT, MICROSOFT_AUTH_HINT
from nimbus_api.smtp.client import Mode
from nimbus_api.smtp.errors import MAX_REPLY_TEXT, credential_forms, parse_reply, redact
from tests.servers import certs as test_certs
from tests.servers.smtp_server import TestSmtpServer

from .conftest import MakeNet, Serve

ADDRESS = "ada@example.test"
USER = "ada"
PASSWORD = "s3cret-Pa55word"
USERS = {USER: PASSWORD}
MESSAGE = b"From: ada@example.test\r\nTo: ada@example.test\r\nSubject: nimbus test\r\n\r\nOne line.\r\n"


class CountingSecret(Secret):
    """A Secret that counts how often it is revealed."""

    __slots__ = ("reveals",)

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.reveals = 0

    def reveal(self) -> str:
        self.reveals += 1
        return super().reveal()


def account(
    port: int,
    mode: Mode = "starttls",
    *,
    host: str = "mail.example.test",
    username: str | None = USER,
    password: str | Secret | None = PASSWORD,
    allow_plaintext_auth: bool = False,
) -> SmtpServer:
    secret = Secret(password) if isinstance(password, str) else password
    return SmtpServer(
        host=host,
        port=port,
        mode=mode,
        username=username if secret is not None else None,
        password=secret,
        allow_plaintext_auth=allow_plaintext_auth,
    )


async def failure(server: SmtpServer, net: Any) -> SmtpError:
    with pytest.raises(SmtpError) as info:
        await send_test_message(server, net, sender=ADDRESS, recipient=ADDRESS, message=MESSAGE)
    return info.value


def starttls_server(certs: test_certs.TestCerts, **options: Any) -> dict[str, Any]:
    return {"users": USERS, "tls_context": certs.server_context(), "require_starttls": True, **options}


# --- success ---------------------------------------------------------------------------------------


async def test_starttls_with_auth_records_the_reply_to_the_final_dot(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls_server(certs))
    secret = CountingSecret(PASSWORD)
    result = await send_test_message(
        account(server.port, password=secret), make_net(server.port), sender=ADDRESS, recipient=ADDRESS, message=MESSAGE
    )
    assert result.reply.code == 250
    assert result.reply.enhanced == "2.0.0"
    assert result.reply.text == "OK queued as T1"
    assert result.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert result.auth_mechanism == "PLAIN"
    assert result.warnings == []
    assert result.duration_ms >= 0
    assert secret.reveals == 1  # once, for AUTH
    assert server.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
    assert b"EHLO [127.0.0.1]\r\n" in server.received  # address literal, no host name lookup or leak
    (envelope,) = server.messages
    assert envelope.mail_from == ADDRESS
    assert envelope.rcpt_tos == [ADDRESS]
    assert isinstance(envelope.content, bytes)
    assert b"One line." in envelope.content
    assert await server.wait_until_idle()


async def test_implicit_tls_with_auth(serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts) -> None:
    server = await serve(users=USERS, ssl_context=certs.server_context())
    result = await send_test_message(
        account(server.port, "ssl"), make_net(server.port), sender=ADDRESS, recipient=ADDRESS, message=MESSAGE
    )
    assert result.reply.code == 250
    assert result.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert result.auth_mechanism == "PLAIN"
    assert "STARTTLS" not in server.commands
    assert len(server.messages) == 1


async def test_ip_literal_host_verifies_against_the_ip(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls_server(certs))
    result = await send_test_message(
        account(server.port, host="127.0.0.1"),
        make_net(server.port),
        sender=ADDRESS,
        recipient=ADDRESS,
        message=MESSAGE,
    )
    assert result.reply.code == 250


async def test_login_mechanism_when_plain_is_not_offered(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls_server(certs, auth_mechanisms=["LOGIN"]))
    result = await send_test_message(
        account(server.port), make_net(server.port), sender=ADDRESS, recipient=ADDRESS, message=MESSAGE
    )
    assert result.auth_mechanism == "LOGIN"
    assert server.auth_attempts == [("LOGIN", USER)]


async def test_relay_without_credentials_sends_no_auth(serve: Serve, make_net: MakeNet) -> None:
    server = await serve()
    result = await send_test_message(
        account(server.port, "none", password=None),
        make_net(server.port),
        sender=ADDRESS,
        recipient=ADDRESS,
        message=MESSAGE,
    )
    assert result.reply.code == 250
    assert result.auth_mechanism is None
    assert result.tls_version is None
    assert not server.saw("AUTH")
    assert any("not encrypted" in w for w in result.warnings)


async def test_plaintext_auth_when_the_account_allows_it(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(users=USERS, tls_context=certs.server_context(), auth_require_tls=False)
    result = await send_test_message(
        account(server.port, "none", allow_plaintext_auth=True),
        make_net(server.port),
        sender=ADDRESS,
        recipient=ADDRESS,
        message=MESSAGE,
    )
    assert result.reply.code == 250
    assert result.auth_mechanism == "PLAIN"
    assert any("without encryption" in w for w in result.warnings)
    assert any("offers STARTTLS" in w for w in result.warnings)
    assert not server.saw("STARTTLS")  # mode none stays in cleartext


async def test_connect_is_reusable_for_several_messages(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    delivered: list[Envelope] = []

    async def deliver(envelope: Envelope) -> None:
        delivered.append(envelope)

    server = await serve(**starttls_server(certs), deliver=deliver)
    conn = await connect(account(server.port), make_net(server.port))
    try:
        assert conn.encrypted
        assert conn.auth_mechanism == "PLAIN"
        first = await transmit(conn, sender=ADDRESS, recipients=[ADDRESS], message=MESSAGE)
        second = await transmit(conn, sender=ADDRESS, recipients=[ADDRESS, "bob@example.test"], message=b".dot\n")
    finally:
        conn.close()
    assert (first.text, second.text) == ("OK queued as T1", "OK queued as T2")
    assert server.connections_total == 1
    assert delivered == server.messages
    assert delivered[1].rcpt_tos == [ADDRESS, "bob@example.test"]
    assert delivered[1].content == b".dot\r\n"  # dot-stuffed on the wire, unstuffed by the server
    assert await server.wait_until_idle()


# --- TLS and modes ---------------------------------------------------------------------------------


async def test_starttls_unsupported_is_never_skipped(serve: Serve, make_net: MakeNet) -> None:
    server = await serve(users=USERS, auth_require_tls=False)
    error = await failure(account(server.port, "starttls"), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.starttls_unsupported", "tls")
    assert server.commands == ["EHLO"]
    assert PASSWORD.encode() not in server.received


async def test_starttls_required_530_on_mail(serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts) -> None:
    server = await serve(tls_context=certs.server_context(), require_starttls=True)
    error = await failure(account(server.port, "none", password=None), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.starttls_required", "mail")
    assert error.reply is not None and error.reply.code == 530
    assert error.hint is not None and "starttls" in error.hint


async def test_starttls_required_530_on_auth(serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts) -> None:
    server = await serve(**starttls_server(certs, auth_require_tls=False))
    error = await failure(account(server.port, "none", allow_plaintext_auth=True), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.starttls_required", "auth")
    assert error.reply is not None and error.reply.code == 530


async def test_auth_offered_only_after_starttls_is_starttls_required(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(users=USERS, tls_context=certs.server_context())  # AUTH hidden until TLS
    error = await failure(account(server.port, "none", allow_plaintext_auth=True), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.starttls_required", "auth")
    assert not server.saw("AUTH")


async def test_plaintext_auth_refused_before_anything_secret(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(users=USERS, tls_context=certs.server_context(), auth_require_tls=False)
    secret = CountingSecret(PASSWORD)
    error = await failure(account(server.port, "none", password=secret), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.plaintext_auth_refused", "auth")
    assert error.hint is not None and "offers STARTTLS" in error.hint
    assert not server.saw("AUTH")
    assert server.auth_attempts == []
    assert secret.reveals == 0
    for form in (
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(b"\0ada\0" + PASSWORD.encode()).decode(),
    ):
        assert form.encode() not in server.received
    assert await server.wait_until_idle()


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
async def test_untrusted_certificate(serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts, mode: Mode) -> None:
    tls = (
        {"tls_context": certs.untrusted_context()} if mode == "starttls" else {"ssl_context": certs.untrusted_context()}
    )
    server = await serve(users=USERS, **tls)
    error = await failure(account(server.port, mode), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.tls_certificate_invalid", "tls")
    assert "self-signed" in error.detail or "self signed" in error.detail
    assert server.auth_attempts == []
    assert await server.wait_until_idle()


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
async def test_certificate_is_checked_against_the_host_name_not_the_pinned_ip(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts, mode: Mode
) -> None:
    # other.example.test resolves (stub DNS) to 127.0.0.1, which the certificate does cover: only a check
    # against the name the user typed fails here.
    tls = {"tls_context": certs.server_context()} if mode == "starttls" else {"ssl_context": certs.server_context()}
    server = await serve(users=USERS, **tls)
    error = await failure(account(server.port, mode, host="other.example.test"), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.tls_certificate_invalid", "tls")
    assert "other.example.test" in error.detail


async def test_tls_handshake_failed_when_ssl_meets_a_cleartext_server(serve: Serve, make_net: MakeNet) -> None:
    server = await serve(users=USERS)
    error = await failure(account(server.port, "ssl"), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.tls_handshake_failed", "tls")
    assert error.hint is not None and "starttls" in error.hint
    assert await server.wait_until_idle()


async def test_tls_handshake_failed_when_starttls_is_refused_for_now(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls_server(certs, replies={"STARTTLS": "454 4.7.0 TLS not available"}))
    error = await failure(account(server.port), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.tls_handshake_failed", "tls")
    assert error.reply is not None and error.reply.code == 454


# --- authentication --------------------------------------------------------------------------------


async def test_auth_failed(serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts) -> None:
    server = await serve(**starttls_server(certs))
    error = await failure(account(server.port, password="wrong"), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.auth_failed", "auth")
    assert error.reply is not None
    assert (error.reply.code, error.reply.enhanced) == (535, "5.7.8")
    assert error.hint == GENERIC_AUTH_HINT
    assert server.auth_attempts == [("PLAIN", USER)]  # one attempt: no second mechanism after a refusal
    assert not server.saw("MAIL")


async def test_auth_failed_on_a_gmail_host_hints_at_app_passwords(serve: Serve, make_net: MakeNet) -> None:
    # smtp.gmail.com resolves to 127.0.0.1 in the stub DNS; cleartext because the test CA cannot sign for it.
    server = await serve(users=USERS, auth_require_tls=False)
    error = await failure(
        account(server.port, "none", host="smtp.gmail.com", password="wrong", allow_plaintext_auth=True),
        make_net(server.port),
    )
    assert error.code == "smtp.auth_failed"
    assert error.hint == GOOGLE_AUTH_HINT
    assert "app password" in error.hint


@pytest.mark.parametrize(
    ("host", "hint"),
    [
        ("smtp.gmail.com", GOOGLE_AUTH_HINT),
        ("smtp.googlemail.com", GOOGLE_AUTH_HINT),
        ("smtp-relay.gmail.com.", GOOGLE_AUTH_HINT),
        ("smtp.office365.com", MICROSOFT_AUTH_HINT),
        ("SMTP-MAIL.OUTLOOK.COM", MICROSOFT_AUTH_HINT),
        ("mail.example.com", GENERIC_AUTH_HINT),
        ("notgmail.com", GENERIC_AUTH_HINT),
    ],
)
def test_auth_failed_hint_by_host(host: str, hint: str) -> None:
    assert auth_failed_hint(host) == hint


async def test_auth_unsupported_when_no_auth_is_offered(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(tls_context=certs.server_context())  # no users: no AUTH at all
    error = await failure(account(server.port), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.auth_unsupported", "auth")
    assert not server.saw("AUTH")


async def test_auth_unsupported_when_no_mechanism_matches(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls_server(certs, auth_mechanisms=["CRAM-MD5", "XOAUTH2"]))
    error = await failure(account(server.port), make_net(server.port))
    assert (error.code, error.stage) == ("smtp.auth_unsupported", "auth")
    assert "CRAM-MD5" in error.detail
    assert not server.saw("AUTH")


async def test_server_reply_echoing_credentials_is_redacted(
    serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts
) -> None:
    echo = "535 5.7.8 Bad credentials for {login}: {password} / {password_b64} / AUTH PLAIN {blob}"
    server = await serve(**starttls_server(certs, replies={"AUTH": echo}))
    error = await failure(account(server.port), make_net(server.port))
    assert error.code == "smtp.auth_failed"
    assert error.reply is not None
    secrets = [
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode(),
    ]
    for text in (error.reply.text, error.detail, str(error), repr(error.args)):
        for secret in secrets:
            assert secret not in text
    assert "[redacted]" in error.reply.text
    assert error.reply.text.startswith("Bad credentials for ada:")
    # The raw aiosmtplib exception (unredacted text) does not ride along.
    assert error.__cause__ is None
    assert error.__context__ is None


# --- envelope and content refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("replies", "code", "stage", "reply_code"),
    [
        (
            {"MAIL": "553 5.7.1 <ada@example.test>: Sender address rejected: not owned by user ada"},
            "smtp.sender_rejected",
            "mail",
            553,
        ),
        (
            {"RCPT": "550 5.1.1 <ada@example.test>: Recipient address rejected: User unknown"},
            "smtp.recipient_rejected",
            "rcpt",
            550,
        ),
        ({"RCPT": "554 5.7.1 <ada@example.test>: Relay access denied"}, "smtp.relay_denied", "rcpt", 554),
        ({"RCPT": "450 4.7.1 Try again later"}, "smtp.throttled", "rcpt", 450),
        (
            {"CONNECT": "421 4.3.2 Service not available, closing transmission channel"},
            "smtp.throttled",
            "connect",
            421,
        ),
        ({"DATA": "554 5.7.1 Message rejected as spam"}, "smtp.rejected", "dot", 554),
        ({"CONNECT": "554 5.3.2 No SMTP service here"}, "smtp.rejected", "connect", 554),
        ({"EHLO": "550 5.7.1 Access denied"}, "smtp.rejected", "ehlo", 550),
    ],
)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-command-at-a-time"])
async def test_scripted_refusals(
    serve: Serve,
    make_net: MakeNet,
    certs: test_certs.TestCerts,
    replies: dict[str, str],
    code: str,
    stage: str,
    reply_code: int,
    pipelining: bool,
) -> None:
    server = await serve(**starttls_server(certs, replies=replies), pipelining=pipelining)
    error = await failure(account(server.port), make_net(server.port))
    assert (error.code, error.stage) == (code, stage)
    assert error.reply is not None and error.reply.code == reply_code
    assert error.hint
    assert server.messages == []
    assert await server.wait_until_idle()


async def test_relay_denied_without_credentials_hints_at_a_login(serve: Serve, make_net: MakeNet) -> None:
    server = await serve(replies={"RCPT": "554 5.7.1 <ada@example.test>: Relay access denied"})
    error = await failure(account(server.port, "none", password=None), make_net(server.port))
    assert error.code == "smtp.relay_denied"
    assert error.hint is not None and "username and password" in error.hint


# --- timeouts, closing, cancellation ---------------------------------------------------------------


async def test_timeout_on_a_silent_server_closes_the_connection(serve: Serve, make_net: MakeNet) -> None:
    server = await serve(silent=True)
    started = time.monotonic()
    error = await failure(account(server.port, "starttls"), make_net(server.port, connect_timeout=0.3))
    elapsed = time.monotonic() - started
    assert (error.code, error.stage) == ("smtp.timeout", "connect")
    assert 0.25 < elapsed < 1.5
    assert server.connections_total == 1
    assert await server.wait_until_idle(1.0)


async def test_timeout_on_implicit_tls_to_a_silent_server(serve: Serve, make_net: MakeNet) -> None:
    server = await serve(silent=True)
    started = time.monotonic()
    error = await failure(account(server.port, "ssl"), make_net(server.port, connect_timeout=0.3))
    assert (error.code, error.stage) == ("smtp.timeout", "tls")
    assert time.monotonic() - started < 1.5
    assert await server.wait_until_idle(1.0)


async def test_timeout_after_the_final_dot(serve: Serve, make_net: MakeNet, certs: test_certs.TestCerts) -> None:
    server = await serve(**starttls_server(certs, stall_after_dot=True))
    started = time.monotonic()
    error = await failure(account(server.port), make_net(server.port, command_timeout=0.3))
    assert (error.code, error.stage) == ("smtp.timeout", "dot")
    assert time.monotonic() - started < 1.5
    assert error.hint is not None and "may or may not" in error.hint
    assert await server.wait_until_idle(1.0)


async def test_cancellation_closes_the_connection(serve: Serve, make_net: MakeNet) -> None:
    server = await serve(silent=True)
    task = asyncio.create_task(
        send_test_message(
            account(server.port, "starttls"),
            make_net(server.port, connect_timeout=30),
            sender=ADDRESS,
            recipient=ADDRESS,
            message=MESSAGE,
        )
    )
    await server.wait_for_connections(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await server.wait_until_idle(1.0)


# --- before any SMTP: DNS, policy, TCP -------------------------------------------------------------


async def test_connection_refused(make_net: MakeNet, closed_port: int) -> None:
    error = await failure(account(closed_port, "none", host="127.0.0.1", password=None), make_net(closed_port))
    assert (error.code, error.stage) == ("smtp.connection_refused", "connect")


async def test_host_not_allowed_loopback_without_allowlist(serve: Serve, make_net: MakeNet) -> None:
    server = await serve()
    error = await failure(account(server.port, "none", password=None), make_net(server.port, allow=()))
    assert (error.code, error.stage) == ("smtp.host_not_allowed", "connect")
    assert "127.0.0.1" not in error.detail  # refusals name the host, not where it resolved to
    assert server.connections_total == 0


async def test_host_not_allowed_port_not_allowlisted(serve: Serve, make_net: MakeNet) -> None:
    server = await serve()
    error = await failure(account(server.port, "none", password=None), make_net())
    assert error.code == "smtp.host_not_allowed"
    assert str(server.port) in error.detail
    assert server.connections_total == 0


async def test_host_unresolvable(make_net: MakeNet) -> None:
    error = await failure(account(2525, host="nx.example.test"), make_net())
    assert (error.code, error.stage) == ("smtp.host_unresolvable", "connect")


def test_server_validates_mode_and_port() -> None:
    with pytest.raises(ValueError):
        SmtpServer("mail.example.test", 587, "tls", None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SmtpServer("mail.example.test", 0, "none", None, None)


def test_redact_removes_every_credential_form() -> None:
    forms = credential_forms(USER, PASSWORD)
    plain_blob = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    text = (
        f"535 no: {PASSWORD.upper()} {base64.b64encode(PASSWORD.encode()).decode().rstrip('=')} {plain_blob} "
        f"{USER}:{PASSWORD} AUTH LOGIN YWRh AUTH PLAIN c29tZXRoaW5n"
    )
    redacted = redact(text, forms)
    assert PASSWORD.upper() not in redacted
    assert plain_blob not in redacted
    assert "YWRh" not in redacted and "c29tZXRoaW5n" not in redacted
    assert redacted == "535 no: [redacted] [redacted] [redacted] [redacted] AUTH LOGIN [redacted] AUTH PLAIN [redacted]"
    assert redact("nothing secret", []) == "nothing secret"


def test_parse_reply_splits_the_enhanced_code_and_cleans_the_text() -> None:
    reply = parse_reply(
        535,
        "5.7.8 Username and Password not accepted. Learn more at\n5.7.8  https://support.google.com/mail/?p=BadCredentials",
    )
    assert (reply.code, reply.enhanced) == (535, "5.7.8")
    assert (
        reply.text
        == "Username and Password not accepted. Learn more at\nhttps://support.google.com/mail/?p=BadCredentials"
    )
    assert str(reply).startswith("535 5.7.8 Username and Password")
    assert parse_reply(250, "OK").enhanced is None
    assert parse_reply(554, "bad \udcff byte\x07").text == "bad \ufffd byte\ufffd"
    assert len(parse_reply(554, "x" * 5000).text) == MAX_REPLY_TEXT + 1


def test_test_server_refuses_unknown_scripts() -> None:
    with pytest.raises(ValueError):
        TestSmtpServer(replies={"HELO": "500 no"})
