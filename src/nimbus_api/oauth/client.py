"""The token endpoint and the revocation endpoint, over HTTPS with httpx (no ORM here).

``exchange`` trades an authorization code (with its PKCE verifier) for tokens; ``refresh`` trades the
refresh token for a new access token; a refusal is ``TokenRefused`` with the OAuth ``error``
(``invalid_grant``: the refresh token was revoked or the consent withdrawn, so only a person can fix it).
A network failure or a 5xx is ``TokenEndpointUnavailable``: try again later, nothing is wrong with the grant.

The identity (address, display name, Google's hosted domain) comes from the ``id_token`` of the same
response. Its signature is not checked: it came straight from the token endpoint over TLS, the client
authenticated, which OpenID Connect Core 3.1.3.7 allows in place of the signature; its ``aud`` must be
our client id. Tokens never appear in an exception's text.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from nimbus_api.kit.crypto import Secret
from nimbus_api.oauth.providers import Provider


class TokenRefused(Exception):
    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(f"the token endpoint refused: {error}" + (f" ({description})" if description else ""))
        self.error = error
        self.description = description


class TokenEndpointUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Tokens:
    access_token: Secret
    refresh_token: Secret | None
    expires_in: int
    scope: str
    id_token: str | None

    def __repr__(self) -> str:
        return f"Tokens(expires_in={self.expires_in}, scope={self.scope!r})"


@dataclass(frozen=True)
class Identity:
    email: str
    name: str | None
    hosted_domain: str | None


async def _post(provider: Provider, data: dict[str, str], timeout: float) -> dict[str, Any]:
    form = {**data, "client_id": provider.client_id, "client_secret": provider.client_secret.reveal()}
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
            reply = await http.post(provider.token_url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TokenEndpointUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
    if reply.status_code >= 500:
        raise TokenEndpointUnavailable(f"token endpoint answered {reply.status_code}")
    try:
        body = reply.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if reply.status_code != 200 or "access_token" not in body:
        error = str(body.get("error") or f"http_{reply.status_code}")[:60]
        description = body.get("error_description")
        raise TokenRefused(error, str(description)[:300] if description else None)
    return body


def _tokens(body: dict[str, Any], requested_scope: str) -> Tokens:
    refresh = body.get("refresh_token")
    return Tokens(
        access_token=Secret(str(body["access_token"])),
        refresh_token=Secret(str(refresh)) if refresh else None,
        expires_in=int(body.get("expires_in") or 3600),
        scope=str(body.get("scope") if body.get("scope") is not None else requested_scope),
        id_token=str(body["id_token"]) if body.get("id_token") else None,
    )


async def exchange(provider: Provider, *, code: str, verifier: Secret, redirect_uri: str, timeout: float) -> Tokens:
    body = await _post(
        provider,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier.reveal(),
        },
        timeout,
    )
    return _tokens(body, provider.scope)


async def refresh(provider: Provider, refresh_token: Secret, *, scope: str, timeout: float) -> Tokens:
    body = await _post(provider, {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal()}, timeout)
    return _tokens(body, scope)


async def revoke(provider: Provider, token: Secret, *, timeout: float) -> int | None:
    """Best effort (Google's endpoint; Microsoft has none): a grant we will not use is given back. The
    endpoint's HTTP status (200: revoked), or None when there is no endpoint or it could not be reached."""
    if not provider.revoke_url:
        return None
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
            reply = await http.post(
                provider.revoke_url,
                data={"token": token.reveal(), "token_type_hint": "refresh_token"},
                auth=(provider.client_id, provider.client_secret.reveal()),
            )
    except httpx.HTTPError:
        return None
    return reply.status_code


def identity(provider: Provider, id_token: str | None) -> Identity | None:
    """The address and name the id_token states for our client; None without a usable one."""
    if not id_token or id_token.count(".") != 2:
        return None
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if provider.client_id not in audiences:
        return None
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires < time.time() - 300:
        return None
    email = claims.get("email") or claims.get("preferred_username")
    if not isinstance(email, str) or "@" not in email:
        return None
    if claims.get("email_verified") is False:
        return None
    name = claims.get("name")
    hd = claims.get("hd")
    return Identity(
        email=email.strip(),
        name=name.strip()[:200] if isinstance(name, str) and name.strip() else None,
        hosted_domain=hd if isinstance(hd, str) and hd else None,
    )
