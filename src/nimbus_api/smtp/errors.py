"""What an SMTP failure looks like to the rest of the product, and how server text is made safe to keep.

Every failure of the adapter is one ``SmtpError`` with a stable ``code`` (``smtp.auth_failed``...), the
``stage`` it happened in, a sentence for people (``detail``), an optional ``hint`` saying what to change,
and the server's own ``reply`` when there was one. Callers branch on ``code`` only; the texts may change.

The server's reply text is passed on because it is often the only precise explanation ("5.7.139
SmtpClientAuthentication is disabled for the Tenant"). But servers echo what they were sent, and some
echo the credentials: the password, its base64, a whole ``AUTH PLAIN`` blob. ``redact`` removes every
form of the credential we could have sent before the text is stored, logged or shown; ``ServerReply``
only ever holds redacted text. For the same reason ``SmtpError`` is raised without chaining the
aiosmtplib exception (whose message is the raw reply): a logged traceback must not carry it.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Stage = Literal["connect", "tls", "ehlo", "auth", "mail", "rcpt", "data", "dot"]
STAGES: tuple[Stage, ...] = ("connect", "tls", "ehlo", "auth", "mail", "rcpt", "data", "dot")
STAGE_WORDS: dict[Stage, str] = {
    "connect": "the connection",
    "tls": "the TLS negotiation",
    "ehlo": "EHLO",
    "auth": "AUTH",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
    "data": "DATA",
    "dot": "the end of the message",
}
"""How a detail sentence names each stage."""

REDACTED = "[redacted]"
MAX_REPLY_TEXT = 2000

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
# An AUTH command (or a server quoting one) carries its secret as the argument after the mechanism.
_AUTH_ARGUMENT = re.compile(r"(?i)\b(AUTH\s+(?:PLAIN|LOGIN|XOAUTH2|OAUTHBEARER|CRAM-MD5)\s+)(?!\[redacted\])\S+")


@dataclass(frozen=True)
class ServerReply:
    """One reply of the server: basic code, enhanced status code (RFC 3463) if any, redacted text."""

    code: int
    enhanced: str | None
    text: str

    def __str__(self) -> str:
        return " ".join(part for part in (str(self.code), self.enhanced, self.text.replace("\n", " ")) if part)


class SmtpError(Exception):
    """A failed SMTP step. ``code`` is stable; ``detail`` and ``hint`` are for people."""

    def __init__(
        self,
        code: str,
        detail: str,
        stage: Stage,
        reply: ServerReply | None = None,
        hint: str | None = None,
        *,
        oauth_status: str | None = None,
    ) -> None:
        super().__init__(code, detail, stage, reply, hint)
        #: For an OAuth login the server refused: the ``status`` of its 334 JSON challenge ("401",
        #: "invalid_token", ...), so a caller can tell a rejected/expired token from other failures.
        self.oauth_status = oauth_status
        self.code = code
        self.detail = detail
        self.stage: Stage = stage
        self.reply = reply
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.code} ({self.stage}): {self.detail}"
        return f"{text} [server: {self.reply}]" if self.reply is not None else text


def credential_forms(username: str | None, password: str) -> list[str]:
    """Every form in which we may have put the password on the wire (or a server may quote it)."""
    if not password:
        return []
    forms = {password, f"{username}:{password}"} if username else {password}

    def b64(raw: str) -> str:
        return base64.b64encode(raw.encode("utf-8")).decode("ascii")

    encoded = [b64(password)]
    if username:
        encoded += [
            b64(f"\0{username}\0{password}"),  # AUTH PLAIN, empty authzid (what we send)
            b64(f"{username}\0{username}\0{password}"),  # AUTH PLAIN, authzid = username
            b64(f"{username}:{password}"),  # HTTP-basic-style echoes
        ]
    for value in encoded:
        forms.add(value)
        forms.add(value.rstrip("="))
    return sorted(forms, key=len, reverse=True)


def bearer_forms(username: str | None, token: str, sasl: Iterable[str] = ()) -> list[str]:
    """``credential_forms`` for an OAuth access token, plus each SASL string (XOAUTH2, OAUTHBEARER) and
    its base64, which is what goes on the wire."""
    forms = set(credential_forms(username, token))
    for raw in sasl:
        value = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        forms.update((raw, value, value.rstrip("=")))
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (any case) and every AUTH argument replaced."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    return _AUTH_ARGUMENT.sub(lambda m: m.group(1) + REDACTED, text)


def _printable(text: str) -> str:
    """Keep line breaks; replace other control characters and undecodable bytes (lone surrogates)."""
    out = []
    for char in text:
        if char == "\n":
            out.append(char)
        elif unicodedata.category(char) in {"Cc", "Cs"}:
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def parse_reply(code: int, message: str, secrets: Iterable[str] = ()) -> ServerReply:
    """A ``ServerReply`` from aiosmtplib's ``(code, message)``: enhanced code split off, text made safe.

    aiosmtplib joins multi-line replies with ``\\n`` and strips the basic code from each line; servers
    repeat the enhanced code on every line, so it is removed from each line that starts with it.
    """
    lines = message.split("\n")
    match = _ENHANCED.match(lines[0].strip())
    enhanced = ".".join(match.groups()) if match else None
    if enhanced is not None:
        lines = [line.strip()[len(enhanced) :].strip() if line.strip().startswith(enhanced) else line for line in lines]
    text = _printable(redact("\n".join(line.strip() for line in lines).strip(), secrets))
    if len(text) > MAX_REPLY_TEXT:
        text = text[:MAX_REPLY_TEXT] + "…"
    return ServerReply(code=code, enhanced=enhanced, text=text)


__all__ = [
    "MAX_REPLY_TEXT",
    "REDACTED",
    "STAGES",
    "STAGE_WORDS",
    "ServerReply",
    "SmtpError",
    "Stage",
    "bearer_forms",
    "credential_forms",
    "parse_reply",
    "redact",
]
