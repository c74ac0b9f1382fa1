"""Giving an OAuth grant back when its account is deleted: the refresh token is revoked at the provider's
revocation endpoint (RFC 7009; Google revokes the whole grant, its access tokens with it), so a deleted
account leaves no live grant behind in our client's name.

Two steps, because the delete must never wait for, nor fail with, the provider:

1. ``prepare`` (in the delete's transaction, before the credentials are deleted): decrypts the refresh
   token (audited, purpose ``oauth_revoke``) only when the provider has a revocation endpoint (Microsoft
   has none: nothing is decrypted for it), and keeps it in memory only (``Secret``: never pickled, so it
   cannot become a job argument).
2. ``revoke`` (after the commit, once the response is sent): one call, bounded by
   ``NIMBUS_OAUTH_HTTP_TIMEOUT_SECONDS``; a refusal, a timeout or an unreachable provider is logged and
   dropped. A delete that rolled back revokes nothing: step 2 runs only after a successful commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.models import EmailAccount, OAuthGrant
from nimbus_api.oauth import client, providers
from nimbus_api.oauth.errors import ProviderNotConfigured
from nimbus_api.oauth.providers import Provider

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PendingRevocation:
    account_id: uuid.UUID
    provider: Provider
    token: Secret
    timeout: float

    def __repr__(self) -> str:
        return f"PendingRevocation(account_id={self.account_id}, provider={self.provider.id!r})"


async def prepare(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    workspace_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    actor: Actor,
) -> PendingRevocation | None:
    """What to revoke once the deletion of ``account_id`` is committed (None: nothing to revoke)."""
    account = await session.get(EmailAccount, account_id)
    if account is None or account.workspace_id != workspace_id or account.auth_method != "oauth2":
        return None
    grant = await session.get(OAuthGrant, account_id)
    if grant is None:
        return None
    try:
        provider = providers.provider(settings, grant.provider)
    except ProviderNotConfigured:  # the operator removed the app: nobody could call its endpoint
        return None
    if not provider.revoke_url:
        return None
    token = await vault.reveal_for_account(
        session, account_id, "oauth_refresh_token", actor=actor, purpose="oauth_revoke"
    )
    if token is None:
        return None
    return PendingRevocation(account_id, provider, token, settings.oauth_http_timeout_seconds)


async def revoke(pending: PendingRevocation) -> None:
    """Best effort: never raises (the account is already gone)."""
    try:
        status = await client.revoke(pending.provider, pending.token, timeout=pending.timeout)
    except Exception as exc:  # a bug here must not surface after the response
        log.warning("oauth_revoke_failed", account_id=str(pending.account_id), reason=type(exc).__name__)
        return
    if status == 200:
        log.info("oauth_grant_revoked", account_id=str(pending.account_id), provider=pending.provider.id)
    else:
        log.warning(
            "oauth_revoke_failed", account_id=str(pending.account_id), provider=pending.provider.id, status=status
        )
