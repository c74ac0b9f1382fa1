"""IMAP AUTHENTICATE for OAuth accounts (``ImapServer.auth_mechanism="oauth2"``): the ``password`` is an
OAuth access token.

``AUTHENTICATE XOAUTH2`` with the initial response (SASL-IR), or ``OAUTHBEARER`` (RFC 7628) when
CAPABILITY lists only that; never without TLS (``allow_plaintext_auth`` does not apply). A refused token
gets a ``+`` challenge (base64 JSON), which we answer with the empty line SASL requires, so the server
sends its tagged NO; the failure is ``imap.auth_failed`` with ``data={"oauth": True, "status": ...}`` and,
for Gmail's "IMAP is disabled" alert, a ``hint``. aioimaplib's own ``xoauth2()`` is not used: it would
wait forever on that challenge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aioimaplib

from nimbus_api.imap.connection import PinnedProtocol
from nimbus_api.imap.errors import AUTH_FAILED, PLAINTEXT_AUTH_REFUSED, ImapError, server_text
from nimbus_api.imap.responses import CONTROL_RE, Reply, response_code, tagged_text
from nimbus_api.imap.types import ImapServer
from nimbus_api.kit import sasl

IMAP_DISABLED_HINT = (
    "IMAP is disabled for this Gmail account: turn on IMAP in Gmail settings (Forwarding and POP/IMAP) "
    "or ask the Workspace admin"
)
_IMAP_DISABLED_WORDS = (
    "imap is disabled",
    "not enabled for imap use",  # Gmail: "[ALERT] Your account is not enabled for IMAP use. Please visit ..."
    "log in via your web browser",
    "web login required",
)

Step = Callable[[Awaitable[Reply], str], Awaitable[Reply]]


class _SaslCommand(aioimaplib.Command):  # type: ignore[misc]
    """AUTHENTICATE with an initial response; a ``+`` challenge (a refused token) is recorded and answered
    with the empty line, so the server sends its tagged NO instead of waiting for us."""

    def __init__(self, *args: Any, on_challenge: Callable[[], None], **kwargs: Any) -> None:
        self._rendered = False
        super().__init__(*args, **kwargs)
        self._on_challenge = on_challenge
        self.challenge: bytes | None = None

    def __repr__(self) -> str:
        """The command line, once: what aioimaplib's ``send`` writes (it renders the command with ``str``).
        Every later rendering leaves out the initial response, which carries the token: aioimaplib logs
        the pending command when the server's challenge arrives (a refused token)."""
        if self._rendered:
            return f"{self.tag} {self.name} {self.args[0] if self.args else ''} <initial response>"
        self._rendered = True
        return str(super().__repr__())

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        if line.startswith(b"+") and self.challenge is None:
            self.challenge = line
            self._on_challenge()
        super().append_to_resp(line, result)


async def authenticate_oauth(protocol: PinnedProtocol, server: ImapServer, step: Step) -> Reply:
    """The tagged OK of a successful AUTHENTICATE (its CAPABILITY is the caller's to take); else an
    ``ImapError`` that never carries the token."""
    where = f"{server.host}:{server.port}"
    if server.mode == "none":  # no plaintext override for tokens
        raise ImapError(
            PLAINTEXT_AUTH_REFUSED,
            f'not sending an OAuth access token to {where} without TLS; use mode "ssl" or "starttls"',
        )
    caps = {str(c).upper() for c in protocol.capabilities}
    mechanism: sasl.OAuthMechanism = (
        "OAUTHBEARER" if "AUTH=OAUTHBEARER" in caps and "AUTH=XOAUTH2" not in caps else "XOAUTH2"
    )
    token = server.password.reveal()
    if CONTROL_RE.search(server.username) or CONTROL_RE.search(token):
        raise ImapError(AUTH_FAILED, "the user name or access token contains a line break or NUL byte")
    initial = sasl.initial_response(mechanism, server.username, server.host, server.port, token)
    encoded = sasl.b64(initial)

    def answer_challenge() -> None:  # SASL: a failure challenge is answered with an empty response
        if protocol.transport is not None:
            protocol.transport.write(b"\r\n")

    command = _SaslCommand(
        "AUTHENTICATE", protocol.new_tag(), mechanism, encoded, loop=protocol.loop, on_challenge=answer_challenge
    )
    reply: Reply = await step(protocol.execute(command, scrub=encoded), f"AUTHENTICATE {mechanism}")
    if reply.result == "OK":
        return reply
    text = server_text(tagged_text(reply), token, initial, encoded)
    challenge = command.challenge[1:] if command.challenge else None
    data: dict[str, Any] = {"oauth": True, "mechanism": mechanism, "status": sasl.error_status(challenge)}
    code = response_code(text or "")
    if code:
        data["response_code"] = code
    if any(words in (text or "").lower() for words in _IMAP_DISABLED_WORDS):
        data["hint"] = IMAP_DISABLED_HINT
        raise ImapError(AUTH_FAILED, f"{where}: IMAP is disabled for this account", server_text=text, data=data)
    raise ImapError(
        AUTH_FAILED,
        f"{where} rejected the OAuth access token ({mechanism}): expired, revoked or without the mail scope",
        server_text=text,
        data=data,
    )
