"""Stable error codes of the IMAP adapter, and the one exception that carries them.

Every failure a user can cause or meet (wrong host, closed port, bad certificate, wrong password, a
folder that does not exist, a server that stops answering) leaves ``imap_session``/``find_message`` as
an ``ImapError`` with a ``code`` from the list below. Codes are part of the API contract: callers map
them to problem types and UI texts, so they never change meaning; new ones may be added.

``server_text`` is what the server said (a tagged ``NO``/``BAD`` text or an unusable greeting), decoded,
shortened, and with the password removed: a server may echo the LOGIN line back, and whatever we pass
on ends up in API responses and logs. ``data`` carries structured extras (``{"folders": [...]}`` for
``imap.folder_not_found``, ``{"response_code": "AUTHENTICATIONFAILED"}`` when the server gave one).
"""

from __future__ import annotations

from typing import Any, Final

HOST_UNRESOLVABLE: Final = "imap.host_unresolvable"
HOST_NOT_ALLOWED: Final = "imap.host_not_allowed"
CONNECTION_REFUSED: Final = "imap.connection_refused"
TIMEOUT: Final = "imap.timeout"
TLS_HANDSHAKE_FAILED: Final = "imap.tls_handshake_failed"
TLS_CERTIFICATE_INVALID: Final = "imap.tls_certificate_invalid"
STARTTLS_UNSUPPORTED: Final = "imap.starttls_unsupported"
PLAINTEXT_AUTH_REFUSED: Final = "imap.plaintext_auth_refused"
AUTH_FAILED: Final = "imap.auth_failed"
FOLDER_NOT_FOUND: Final = "imap.folder_not_found"
PROTOCOL_ERROR: Final = "imap.protocol_error"

CODES: Final = frozenset(
    {
        HOST_UNRESOLVABLE,
        HOST_NOT_ALLOWED,
        CONNECTION_REFUSED,
        TIMEOUT,
        TLS_HANDSHAKE_FAILED,
        TLS_CERTIFICATE_INVALID,
        STARTTLS_UNSUPPORTED,
        PLAINTEXT_AUTH_REFUSED,
        AUTH_FAILED,
        FOLDER_NOT_FOUND,
        PROTOCOL_ERROR,
    }
)
"""All codes. ``imap.protocol_error``: the server closed the connection or answered in a way we cannot
use (a ``BYE`` greeting, ``NO`` to LIST, an unparsable response)."""

SERVER_TEXT_LIMIT: Final = 300
REDACTED: Final = "[redacted]"


class ImapError(Exception):
    """A failure with a stable ``code``, a human ``detail`` and what the server said, if anything."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        server_text: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.server_text = server_text
        self.data: dict[str, Any] = data or {}

    def __repr__(self) -> str:
        return f"ImapError({self.code!r}, {self.detail!r}, server_text={self.server_text!r})"


def redact(text: str, *secrets: str) -> str:
    """``text`` without any of ``secrets``, also in the escaped form an IMAP quoted string gives them."""
    for secret in secrets:
        if not secret:
            continue
        escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
        for form in {secret, escaped}:
            text = text.replace(form, REDACTED)
    return text


def server_text(raw: bytes | bytearray | str | None, *secrets: str) -> str | None:
    """A server line as text we may pass on: decoded, control characters dropped, shortened, redacted.

    Redaction runs on the whole line before shortening, so a cut cannot leave half a password behind.
    """
    if raw is None:
        return None
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    text = redact(text, *secrets)
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    if len(text) > SERVER_TEXT_LIMIT:
        text = text[: SERVER_TEXT_LIMIT - 1] + "…"
    return text or None


__all__ = [
    "AUTH_FAILED",
    "CODES",
    "CONNECTION_REFUSED",
    "FOLDER_NOT_FOUND",
    "HOST_NOT_ALLOWED",
    "HOST_UNRESOLVABLE",
    "PLAINTEXT_AUTH_REFUSED",
    "PROTOCOL_ERROR",
    "STARTTLS_UNSUPPORTED",
    "TIMEOUT",
    "TLS_CERTIFICATE_INVALID",
    "TLS_HANDSHAKE_FAILED",
    "ImapError",
    "redact",
    "server_text",
]
