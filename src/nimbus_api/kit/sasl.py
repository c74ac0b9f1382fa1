"""The OAuth SASL mechanisms both mail adapters speak (SMTP AUTH, IMAP AUTHENTICATE), on values only.

* XOAUTH2 (Google, Microsoft): ``user=U ^A auth=Bearer T ^A ^A``.
* OAUTHBEARER (RFC 7628): a GS2 header naming the user, then ``host``, ``port`` and ``auth`` key-values.

A refused token is answered with a challenge carrying base64 JSON (``{"status": "401", ...}``, RFC 7628
3.2.2); ``error_status`` reads its ``status`` so a caller can tell an expired or revoked token from other
failures. Callers redact the token and both initial responses (and their base64) like a password.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal

AuthKind = Literal["password", "oauth2"]
AUTH_KINDS: tuple[AuthKind, ...] = ("password", "oauth2")
OAuthMechanism = Literal["XOAUTH2", "OAUTHBEARER"]


def xoauth2(username: str, token: str) -> str:
    return f"user={username}\x01auth=Bearer {token}\x01\x01"


def oauthbearer(username: str, host: str, port: int, token: str) -> str:
    return f"n,a={username},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"


def initial_response(mechanism: OAuthMechanism, username: str, host: str, port: int, token: str) -> str:
    """The mechanism's initial client response, not yet base64-encoded."""
    return oauthbearer(username, host, port, token) if mechanism == "OAUTHBEARER" else xoauth2(username, token)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def error_status(challenge: str | bytes | None) -> str | None:
    """The ``status`` of a refused token's challenge (the base64 JSON, without the ``334``/``+``), or None
    when it is not one."""
    if not challenge:
        return None
    try:
        decoded = json.loads(base64.b64decode(challenge.strip(), validate=True))
    except (binascii.Error, ValueError):
        return None
    status = decoded.get("status") if isinstance(decoded, dict) else None
    return str(status) if status is not None else None
