"""The callback's work once its state is consumed: code -> tokens -> grant and identity checks ->
the mailbox's connection checks -> the account saved (or, for a re-authorization, its tokens replaced
and its disabled state cleared). Any refusal is recorded on the attempt (``error_code``, ``error_detail``,
the verification when it ran) and nothing else is saved; tokens of a refused grant are revoked (best
effort), so a refused connect leaves no live grant behind.
"""

from __future__ import annotations

from dataclasses import replace

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.accounts import drafts, limits
from nimbus_api.accounts import service as accounts
from nimbus_api.accounts.drafts import AccountDraft, ServerDraft
from nimbus_api.accounts.errors import EmailAccountExists, EmailAccountLimitReached
from nimbus_api.accounts.schemas import EmailAccountCreate
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.events.catalogue import AccountEnabledData
from nimbus_api.kit.crypto import KeyringError
from nimbus_api.kit.problems import Problem
from nimbus_api.kit.validators import email_domain
from nimbus_api.models import EmailAccount, OAuthAttempt
from nimbus_api.oauth import client, errors, providers, tokens, verify
from nimbus_api.oauth.client import Identity, TokenEndpointUnavailable, TokenRefused, Tokens
from nimbus_api.oauth.providers import Provider
from nimbus_api.providers.presets import suggested_daily_limit
from nimbus_api.sync import mailboxes
from nimbus_api.validation.schemas import VerificationResult
from nimbus_api.validation.service import Verifier

log = structlog.get_logger(__name__)


class AttemptFailed(Exception):
    def __init__(self, code: str, detail: str, result: VerificationResult | None = None) -> None:
        super().__init__(code)
        self.code, self.detail, self.result = code, detail, result


async def complete(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    settings: Settings,
    attempt: OAuthAttempt,
    *,
    code: str | None,
    error: str | None,
    error_description: str | None,
) -> None:
    try:
        account = await _complete(session, vault, verifier, settings, attempt, code, error, error_description)
    except AttemptFailed as failed:
        attempt.status = "failed"
        attempt.error_code = failed.code[:60]
        attempt.error_detail = failed.detail[:2000]
        if failed.result is not None:
            attempt.verification = failed.result.model_dump(mode="json")
        log.info("oauth_connect_failed", attempt_id=str(attempt.id), code=failed.code)
        return
    attempt.status = "succeeded"
    attempt.account_id = account.id
    log.info("oauth_connected", attempt_id=str(attempt.id), account_id=str(account.id))


async def _complete(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    settings: Settings,
    attempt: OAuthAttempt,
    code: str | None,
    error: str | None,
    error_description: str | None,
) -> EmailAccount:
    if error or not code:
        detail = f"the provider answered {error or 'without a code'}"
        raise AttemptFailed(
            errors.ACCESS_DENIED, detail + (f": {error_description[:300]}" if error_description else "")
        )
    provider = providers.provider(settings, attempt.provider)
    try:
        pkce = await vault.unseal(session, attempt.data_key_id, attempt.verifier_ciphertext)
    except KeyringError:  # a key rotation retired the data key it was sealed under (within its 10 minutes)
        raise AttemptFailed(errors.EXCHANGE_FAILED, "the attempt can no longer be completed: start again") from None
    try:
        granted = await client.exchange(
            provider,
            code=code,
            verifier=pkce,
            redirect_uri=providers.redirect_uri(settings, attempt.provider),
            timeout=settings.oauth_http_timeout_seconds,
        )
    except (TokenRefused, TokenEndpointUnavailable) as exc:
        raise AttemptFailed(errors.EXCHANGE_FAILED, str(exc)) from None
    try:
        return await _with_tokens(session, vault, verifier, settings, attempt, provider, granted)
    except AttemptFailed:
        await client.revoke(
            provider, granted.refresh_token or granted.access_token, timeout=settings.oauth_http_timeout_seconds
        )
        raise


async def _with_tokens(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    settings: Settings,
    attempt: OAuthAttempt,
    provider: Provider,
    granted: Tokens,
) -> EmailAccount:
    missing = provider.missing_scopes(granted.scope)
    if missing:
        raise AttemptFailed(
            errors.SCOPE_MISSING,
            f"the grant lacks {', '.join(missing)}: consent to every permission asked (mail sending and reading)",
        )
    if granted.refresh_token is None:
        raise AttemptFailed(errors.EXCHANGE_FAILED, "the provider gave no refresh token (offline access refused)")
    identity = client.identity(provider, granted.id_token)
    if identity is None:
        raise AttemptFailed(errors.IDENTITY_MISSING, "the provider's answer names no verified address for our client")
    attempt.email = identity.email
    if attempt.reauthorize:
        return await _reauthorize(session, vault, verifier, attempt, provider, granted, identity)
    return await _connect(session, vault, verifier, settings, attempt, provider, granted, identity)


def _create_defaults() -> dict[str, object]:
    """The settings a create body leaves at their defaults (campaign types, sync interval...)."""
    skip = {"email", "smtp", "imap", "provider", "daily_send_limit"}
    return {
        name: info.get_default(call_default_factory=True)
        for name, info in EmailAccountCreate.model_fields.items()
        if name not in skip
    }


def _draft(provider: Provider, identity: Identity, *, fields: dict[str, object]) -> AccountDraft:
    email = identity.email
    return AccountDraft(
        email=email,
        domain=email_domain(email),
        smtp=ServerDraft(
            host=provider.smtp.host, port=provider.smtp.port, mode=provider.smtp.mode, username=email, password=None
        ),
        imap=ServerDraft(
            host=provider.imap.host,
            port=provider.imap.port,
            mode=provider.imap.mode,
            username=email,
            password=None,
            folder="INBOX",
        ),
        from_name=identity.name,
        fields=fields,
        auth_method="oauth2",
    )


async def _verified(
    verifier: Verifier, draft: AccountDraft, granted: Tokens, attempt: OAuthAttempt, subject: str
) -> VerificationResult:
    try:
        result = await verify.run(
            verifier, draft, granted.access_token, workspace_id=attempt.workspace_id, subject=subject
        )
    except Problem as exc:  # verification.rate_limited
        raise AttemptFailed(exc.code, exc.detail or exc.title) from None
    if result.status == "failed":
        first = next(c for c in result.checks if c.status == "failed")
        detail = first.detail + (f" ({first.hint})" if first.hint else "")
        raise AttemptFailed(result.code or "verification.failed", detail, result)
    return result


async def _connect(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    settings: Settings,
    attempt: OAuthAttempt,
    provider: Provider,
    granted: Tokens,
    identity: Identity,
) -> EmailAccount:
    exists = await session.scalar(
        select(EmailAccount.id).where(
            EmailAccount.workspace_id == attempt.workspace_id,
            func.lower(EmailAccount.email) == identity.email.lower(),
        )
    )
    if exists is not None:
        raise AttemptFailed(errors.ACCOUNT_EXISTS, f"{identity.email} is already connected in this workspace")
    max_accounts = settings.max_accounts_per_workspace
    try:
        await limits.ensure_room(session, attempt.workspace_id, max_accounts, lock=False)
    except EmailAccountLimitReached as exc:
        raise AttemptFailed(errors.LIMIT_REACHED, exc.detail or exc.title) from None
    preset = providers.account_provider(provider.id, identity.hosted_domain, identity.email)
    fields = _create_defaults()
    fields |= {"provider": preset, "daily_send_limit": suggested_daily_limit(preset), "from_name": identity.name}
    draft = _draft(provider, identity, fields=fields)
    result = await _verified(
        verifier, draft, granted, attempt, Verifier.subject_for_address(attempt.workspace_id, identity.email)
    )
    attempt.verification = result.model_dump(mode="json")
    try:
        async with session.begin_nested():
            account = await accounts.insert_verified(
                session, vault, verifier, attempt.workspace_id, draft, result, max_accounts=max_accounts
            )
            await tokens.store(session, vault, account, provider.id, granted)
    except (EmailAccountExists, EmailAccountLimitReached) as exc:
        code = errors.ACCOUNT_EXISTS if isinstance(exc, EmailAccountExists) else errors.LIMIT_REACHED
        raise AttemptFailed(code, exc.detail or exc.title, result) from None
    return account


async def _reauthorize(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    attempt: OAuthAttempt,
    provider: Provider,
    granted: Tokens,
    identity: Identity,
) -> EmailAccount:
    account = None
    if attempt.account_id is not None:
        account = await session.scalar(
            select(EmailAccount)
            .where(EmailAccount.id == attempt.account_id, EmailAccount.workspace_id == attempt.workspace_id)
            .with_for_update()
        )
    if account is None:
        raise AttemptFailed(errors.ACCOUNT_GONE, "the account to re-authorize was deleted")
    if account.email.lower() != identity.email.lower():
        raise AttemptFailed(
            errors.ACCOUNT_MISMATCH, f"the provider signed in {identity.email}, not {account.email}: sign in as it"
        )
    if account.auth_method == "oauth2":
        draft = drafts.from_account(account, set())  # it carries the account's auth_method, oauth2
    else:  # a password account switched to OAuth: the provider's servers
        draft = replace(_draft(provider, identity, fields={}), from_name=account.from_name or identity.name)
    result = await _verified(verifier, draft, granted, attempt, Verifier.subject_for_account(account.id))
    attempt.verification = result.model_dump(mode="json")
    await verifier.clear(Verifier.subject_for_account(account.id))
    accounts.apply_servers(account, draft)
    accounts.record_result(account, result)
    account.auth_method = "oauth2"
    account.credentials_version += 1  # pooled connections logged in with the old grant retire
    account.verification_locked_at = None
    account.from_name = account.from_name or identity.name
    await vault.remove(session, account.id, "smtp_password")
    await vault.remove(session, account.id, "imap_password")
    await tokens.store(session, vault, account, provider.id, granted)
    await mailboxes.register(session, account)
    if account.disabled_at is not None:
        account.disabled_at, account.disabled_reason = None, None
        events.emit(
            session,
            account.workspace_id,
            "account.enabled",
            AccountEnabledData(account_id=account.id, email=account.email),
        )
    await session.flush()
    return account
