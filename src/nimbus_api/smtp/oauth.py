"""SMTP AUTH for OAuth accounts (``SmtpServer.auth_mechanism="oauth2"``): the ``password`` (or
``password_source``) is an OAuth access token.

The login is OAUTHBEARER (RFC 7628) when the server offers it, else XOAUTH2 (Google/Microsoft), never
PLAIN/LOGIN, and only over TLS (``allow_plaintext_auth`` does not apply to tokens). A refused token comes
back as a 334 with base64 JSON (``{"status":"401",...}``); we answer the empty line the protocol requires
(RFC 7628 3.2.3), read the final 5xx and raise ``smtp.auth_failed`` with ``oauth_status`` set from the
JSON. The token and both SASL strings are redacted like a password (``errors.bearer_forms``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nimbus_api.kit import sasl
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.net import NetContext
from nimbus_api.smtp.classify import HINTS, reply_hint
from nimbus_api.smtp.errors import SmtpError, bearer_forms

if TYPE_CHECKING:
    from nimbus_api.smtp.connection import SmtpConnection, SmtpServer

REFUSED_TOKEN_HINT = "The access token was refused (expired, revoked or without the mail scope): reconnect the account."


def _mechanism(conn: SmtpConnection) -> sasl.OAuthMechanism:
    offered = conn.server_auth_methods if conn.supports_extension("auth") else []
    if "oauthbearer" in offered:
        return "OAUTHBEARER"
    if "xoauth2" in offered:
        return "XOAUTH2"
    listed = " ".join(m.upper() for m in offered) or "none"
    raise conn.fail(
        "smtp.auth_unsupported",
        f"the server offers AUTH {listed}; an OAuth account needs XOAUTH2 or OAUTHBEARER",
        "auth",
        "This server does not take OAuth logins: connect the mailbox with a password instead.",
    )


async def authenticate_oauth(
    conn: SmtpConnection, server: SmtpServer, net: NetContext, username: str, token: Secret
) -> None:
    if not conn.encrypted:  # no plaintext override for tokens
        raise conn.fail(
            "smtp.plaintext_auth_refused",
            "refusing to send an OAuth access token over an unencrypted connection",
            "auth",
            HINTS["smtp.plaintext_auth_refused"],
        )
    mechanism = _mechanism(conn)
    # The token is revealed here, for the AUTH command (and the redaction of what follows), only.
    secret = token.reveal()
    host = conn.target.host.rstrip(".")
    forms = {m: sasl.initial_response(m, username, host, server.port, secret) for m in ("XOAUTH2", "OAUTHBEARER")}
    conn.secret_forms = bearer_forms(username, secret, forms.values())
    limit = net.command_timeout
    initial = sasl.b64(forms[mechanism]).encode("ascii")
    response = await conn.step("auth", conn.execute_command(b"AUTH", mechanism.encode(), initial, timeout=limit))
    if response.code == 235:
        conn.auth_mechanism = mechanism
        return
    status: str | None = None
    if response.code == 334:  # the error challenge: the client must answer with an empty line (RFC 7628 3.2.3)
        status = sasl.error_status(response.message)
        response = await conn.step("auth", conn.execute_command(b"", timeout=limit))
    error = conn.reply_error("auth", response.code, response.message)
    if error.code == "smtp.auth_failed" or response.code == 334:
        detail = f"the server refused the OAuth access token ({mechanism}"
        detail += f", status {status})" if status else ")"
        detail += f": {error.reply}" if error.reply is not None else ""
        hint = reply_hint(error.reply.text) if error.reply is not None else None
        raise SmtpError(
            "smtp.auth_failed", detail, "auth", error.reply, hint or REFUSED_TOKEN_HINT, oauth_status=status
        )
    raise error
