"""Connecting a mailbox through OAuth: the authorize URL, and its callback.

An attempt (``models.oauth_state``) is made by ``start``: a random ``state`` (only its SHA-256 is kept)
bound to the workspace, a PKCE verifier (S256, sealed under the workspace's data key), the frontend URL
to send the browser back to (its origin must be in ``NIMBUS_OAUTH_FRONTEND_ORIGINS``), expiring after
``NIMBUS_OAUTH_STATE_TTL_SECONDS``.

The callback is public (the provider's redirect carries no API key): the state is what binds it to the
workspace, so an unknown, expired, already used or other provider's state is refused (400
``oauth.state_invalid``) before anything else. A known one is consumed at once (a replay is refused),
then ``connect.complete`` exchanges the code, checks the grant and the mailbox and saves the account,
or records why not; either way the browser goes back (303) to the frontend with ``oauth_attempt`` and
``account_id`` or ``error``, and the frontend reads the details at ``GET /v1/oauth/attempts/{id}``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.models import EmailAccount, OAuthAttempt, OAuthGrant
from nimbus_api.oauth import connect, providers
from nimbus_api.oauth.errors import AttemptNotFound, FrontendNotAllowed, StateInvalid
from nimbus_api.oauth.schemas import OAuthAttemptRead, OAuthAuthorizeOut
from nimbus_api.validation.schemas import VerificationResult
from nimbus_api.validation.service import Verifier


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def check_frontend(settings: Settings, url: str) -> None:
    allowed = {_origin(o.rstrip("/")) for o in settings.oauth_frontend_origins}
    if _origin(url) not in allowed:
        raise FrontendNotAllowed(f"{_origin(url)} is not an allowed frontend origin (NIMBUS_OAUTH_FRONTEND_ORIGINS)")


async def start(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    workspace_id: uuid.UUID,
    provider_id: str,
    *,
    frontend_url: str,
    login_hint: str | None = None,
    account: EmailAccount | None = None,
) -> OAuthAuthorizeOut:
    """A new attempt and the provider URL to send the browser to (``account``: re-authorize that one)."""
    provider = providers.provider(settings, provider_id)
    check_frontend(settings, frontend_url)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    key_id, sealed = await vault.seal(session, workspace_id, Secret(verifier))
    hint = login_hint or (account.email if account is not None else None)
    attempt = OAuthAttempt(
        workspace_id=workspace_id,
        provider=provider_id,
        state_hash=_hash(state),
        data_key_id=key_id,
        verifier_ciphertext=sealed,
        frontend_url=frontend_url,
        login_hint=hint,
        account_id=account.id if account is not None else None,
        reauthorize=account is not None,
        status="pending",
        expires_at=utcnow() + timedelta(seconds=settings.oauth_state_ttl_seconds),
    )
    session.add(attempt)
    await session.flush()
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": providers.redirect_uri(settings, provider_id),
        "scope": provider.scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **dict(provider.authorize_params),
    }
    if hint:
        params["login_hint"] = hint
    glue = "&" if "?" in provider.authorize_url else "?"
    return OAuthAuthorizeOut(
        attempt_id=attempt.id,
        provider=provider.id,
        authorize_url=f"{provider.authorize_url}{glue}{urlencode(params)}",
        expires_at=attempt.expires_at,
    )


async def callback(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    settings: Settings,
    provider_id: str,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    error_description: str | None,
) -> str:
    """Complete the attempt the state names; returns where to send the browser (303)."""
    attempt = None
    if state:
        attempt = await session.scalar(
            select(OAuthAttempt).where(OAuthAttempt.state_hash == _hash(state)).with_for_update()
        )
    now = utcnow()
    if (
        attempt is None
        or attempt.provider != provider_id
        or attempt.used_at is not None
        or attempt.status != "pending"
        or attempt.expires_at <= now
    ):
        raise StateInvalid("the state is unknown, expired or already used: start again from the frontend")
    attempt.used_at = now
    await session.flush()
    await connect.complete(
        session, vault, verifier, settings, attempt, code=code, error=error, error_description=error_description
    )
    attempt.verifier_ciphertext = b""  # used once: nothing is kept that could complete it again
    await session.flush()
    return frontend_location(attempt)


def frontend_location(attempt: OAuthAttempt) -> str:
    parts = urlsplit(attempt.frontend_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.append(("oauth_attempt", str(attempt.id)))
    if attempt.status == "succeeded" and attempt.account_id is not None:
        query.append(("account_id", str(attempt.account_id)))
    else:
        query.append(("error", attempt.error_code or "oauth.failed"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


async def get_attempt(session: AsyncSession, workspace_id: uuid.UUID, attempt_id: uuid.UUID) -> OAuthAttemptRead:
    attempt = await session.scalar(
        select(OAuthAttempt).where(OAuthAttempt.id == attempt_id, OAuthAttempt.workspace_id == workspace_id)
    )
    if attempt is None:
        raise AttemptNotFound()
    return OAuthAttemptRead(
        id=attempt.id,
        provider=attempt.provider,
        status=attempt.status,
        reauthorize=attempt.reauthorize,
        account_id=attempt.account_id,
        email=attempt.email,
        error_code=attempt.error_code,
        error_detail=attempt.error_detail,
        verification=VerificationResult.model_validate(attempt.verification) if attempt.verification else None,
        expires_at=attempt.expires_at,
        created_at=attempt.created_at,
        updated_at=attempt.updated_at,
    )


async def grant_provider(session: AsyncSession, account_id: uuid.UUID) -> providers.OAuthProviderId | None:
    """The provider an OAuth account's grant came from."""
    grant = await session.get(OAuthGrant, account_id)
    if grant is None or grant.provider not in providers.PROVIDERS:
        return None
    return grant.provider
