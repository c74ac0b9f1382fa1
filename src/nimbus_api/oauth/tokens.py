"""An OAuth account's tokens: stored through the Vault (credential kinds ``oauth_access_token`` and
``oauth_refresh_token``, every decrypt audited), refreshed under the account's advisory lock.

``current`` is what every login asks for. Under the transaction-level lock of the account
(``kit.locks``, namespace ``oauth_refresh``) it reads the grant again and:

* returns the stored access token while it is valid for more than ``NIMBUS_OAUTH_REFRESH_MARGIN_SECONDS``
  and the caller did not report it refused;
* otherwise refreshes it at the token endpoint, stores the new one and bumps ``token_version``.

A caller whose login was refused passes the ``version`` of the token it used: the refresh happens only if
nobody refreshed since. So two workers that meet the same expired token refresh it once: the second
waits on the lock, then finds a newer version and takes that token.

A refresh refused with ``invalid_grant`` (the refresh token was revoked, the consent withdrawn, the
password changed) cannot be fixed by retrying: the account is disabled with reason
``reauthorization_required`` (which takes it out of the rotation), ``account.disabled`` is emitted, and
``current`` answers None without calling the provider again until a person re-authorizes
(``POST /v1/email-accounts/{id}/reauthorize``). All of it is written in the caller's session: the
caller commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Purpose, Vault
from nimbus_api.events.catalogue import AccountDisabledData
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.locks import xact_lock
from nimbus_api.models import AccountEvent, EmailAccount, OAuthGrant
from nimbus_api.oauth import client, providers
from nimbus_api.oauth.client import TokenEndpointUnavailable, TokenRefused, Tokens

log = structlog.get_logger(__name__)

LOCK_NAMESPACE = "oauth_refresh"
REAUTHORIZATION_REQUIRED = "reauthorization_required"
#: refusals a retry will not fix: only a person consenting again does
DEAD_GRANT_ERRORS = frozenset({"invalid_grant"})


@dataclass(frozen=True)
class AccessToken:
    secret: Secret
    version: int


class RefreshUnavailable(Exception):
    """The token endpoint could not answer (network, 5xx, a refusal that is not the grant's): try later."""


async def store(
    session: AsyncSession,
    vault: Vault,
    account: EmailAccount,
    provider_id: str,
    tokens: Tokens,
    *,
    now: datetime | None = None,
) -> OAuthGrant:
    """Save a fresh grant's tokens (connect or re-authorize) and its metadata."""
    now = now or utcnow()
    await vault.store(
        session,
        workspace_id=account.workspace_id,
        account_id=account.id,
        kind="oauth_access_token",
        secret=tokens.access_token,
    )
    if tokens.refresh_token is not None:
        await vault.store(
            session,
            workspace_id=account.workspace_id,
            account_id=account.id,
            kind="oauth_refresh_token",
            secret=tokens.refresh_token,
        )
    grant = await session.get(OAuthGrant, account.id)
    if grant is None:
        grant = OAuthGrant(account_id=account.id, workspace_id=account.workspace_id, token_version=0)
        session.add(grant)
    grant.provider = provider_id
    grant.scope = tokens.scope
    grant.access_expires_at = now + timedelta(seconds=tokens.expires_in)
    grant.token_version = (grant.token_version or 0) + 1
    grant.refreshed_at = now
    await session.flush()
    return grant


async def current(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    account_id: uuid.UUID,
    *,
    actor: Actor,
    purpose: Purpose,
    refused_version: int | None = None,
) -> AccessToken | None:
    """The account's valid access token (see the module docstring); None when the grant is dead."""
    await xact_lock(session, LOCK_NAMESPACE, account_id)
    account = await session.get(EmailAccount, account_id, populate_existing=True)
    grant = await session.get(OAuthGrant, account_id, populate_existing=True)
    if account is None or grant is None or account.disabled_reason == REAUTHORIZATION_REQUIRED:
        return None
    now = utcnow()
    expiring = grant.access_expires_at <= now + timedelta(seconds=settings.oauth_refresh_margin_seconds)
    if not expiring and refused_version != grant.token_version:
        secret = await vault.reveal_for_account(session, account_id, "oauth_access_token", actor=actor, purpose=purpose)
        if secret is not None:
            return AccessToken(secret, grant.token_version)
    return await _refresh(session, vault, settings, account, grant, actor=actor, now=now)


async def _refresh(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    account: EmailAccount,
    grant: OAuthGrant,
    *,
    actor: Actor,
    now: datetime,
) -> AccessToken | None:
    refresh_token = await vault.reveal_for_account(
        session, account.id, "oauth_refresh_token", actor=actor, purpose="oauth_refresh"
    )
    if refresh_token is None:
        await mark_reauthorization_required(session, account, "no refresh token is stored")
        return None
    provider = providers.provider(settings, grant.provider)
    try:
        tokens = await client.refresh(
            provider, refresh_token, scope=grant.scope, timeout=settings.oauth_http_timeout_seconds
        )
    except TokenRefused as exc:
        if exc.error in DEAD_GRANT_ERRORS:
            await mark_reauthorization_required(session, account, exc.description or exc.error)
            return None
        log.warning("oauth_refresh_refused", account_id=str(account.id), error=exc.error)
        raise RefreshUnavailable(f"the token endpoint refused the refresh ({exc.error})") from None
    except TokenEndpointUnavailable as exc:
        log.warning("oauth_refresh_unavailable", account_id=str(account.id), reason=str(exc))
        raise RefreshUnavailable(str(exc)) from None
    await vault.store(
        session,
        workspace_id=account.workspace_id,
        account_id=account.id,
        kind="oauth_access_token",
        secret=tokens.access_token,
    )
    if tokens.refresh_token is not None:  # Microsoft rotates refresh tokens; Google keeps the first
        await vault.store(
            session,
            workspace_id=account.workspace_id,
            account_id=account.id,
            kind="oauth_refresh_token",
            secret=tokens.refresh_token,
        )
    grant.access_expires_at = now + timedelta(seconds=tokens.expires_in)
    grant.token_version += 1
    grant.refreshed_at = now
    if tokens.scope:
        grant.scope = tokens.scope
    await session.flush()
    log.info("oauth_token_refreshed", account_id=str(account.id), version=grant.token_version)
    return AccessToken(tokens.access_token, grant.token_version)


async def mark_reauthorization_required(session: AsyncSession, account: EmailAccount, why: str) -> None:
    """Disable the account until a person re-authorizes it; ``account.disabled`` once."""
    if account.disabled_reason == REAUTHORIZATION_REQUIRED:
        return
    account.disabled_at = utcnow()
    account.disabled_reason = REAUTHORIZATION_REQUIRED
    session.add(
        AccountEvent(
            workspace_id=account.workspace_id,
            account_id=account.id,
            kind="paused",
            actor="system:oauth",
            detail={"reason": REAUTHORIZATION_REQUIRED, "detail": why[:300]},
        )
    )
    events.emit(
        session,
        account.workspace_id,
        "account.disabled",
        AccountDisabledData(account_id=account.id, email=account.email, reason=REAUTHORIZATION_REQUIRED, by="oauth"),
    )
    await session.flush()
    log.warning("oauth_reauthorization_required", account_id=str(account.id))
