"""The connection checks of an OAuth account: the same flow as a password account's
(``validation.flow``: DNS, SMTP and IMAP logins, roundtrip), with the access token as the servers'
secret and XOAUTH2/OAUTHBEARER as the mechanism. A login refused with the token refreshes it once
(``tokens.current`` with the refused version) and runs the checks again."""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts import drafts
from nimbus_api.accounts.drafts import AccountDraft
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.oauth import tokens
from nimbus_api.oauth.sources import REAUTHORIZE_HINT
from nimbus_api.oauth.tokens import RefreshUnavailable
from nimbus_api.validation.schemas import CheckResult, VerificationResult
from nimbus_api.validation.service import AUTH_FAILURE_CODES, Verifier

REAUTHORIZATION_CODE = "oauth.reauthorization_required"
REFRESH_UNAVAILABLE_CODE = "oauth.refresh_unavailable"


def with_token(draft: AccountDraft, token: Secret) -> AccountDraft:
    imap = replace(draft.imap, password=token) if draft.imap is not None else None
    return replace(draft, smtp=replace(draft.smtp, password=token), imap=imap, auth_method="oauth2")


def failed_result(code: str, detail: str, hint: str | None = None) -> VerificationResult:
    """A verification that could not log in at all (no token to log in with)."""
    check = CheckResult(name="smtp", status="failed", code=code, detail=detail, hint=hint, duration_ms=0)
    return VerificationResult(
        status="failed", code=code, check="smtp", checks=[check], verified_at=utcnow(), duration_ms=0
    )


def refused(result: VerificationResult) -> bool:
    return result.status == "failed" and any(c.code in AUTH_FAILURE_CODES for c in result.checks)


async def run(
    verifier: Verifier, draft: AccountDraft, token: Secret, *, workspace_id: uuid.UUID, subject: str
) -> VerificationResult:
    return await verifier.verify(
        drafts.mailbox_under_test(with_token(draft, token)), workspace_id=workspace_id, subject=subject
    )


async def verify_saved(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    settings: Settings,
    account_id: uuid.UUID,
    draft: AccountDraft,
    *,
    workspace_id: uuid.UUID,
    actor: Actor,
    subject: str,
) -> VerificationResult:
    """A saved OAuth account's checks, with its current token (refreshed once on a refused login)."""
    try:
        token = await tokens.current(session, vault, settings, account_id, actor=actor, purpose="verify")
        if token is None:
            return failed_result(REAUTHORIZATION_CODE, "the OAuth grant is revoked or expired", REAUTHORIZE_HINT)
        result = await run(verifier, draft, token.secret, workspace_id=workspace_id, subject=subject)
        if not refused(result):
            return result
        fresh = await tokens.current(
            session, vault, settings, account_id, actor=actor, purpose="verify", refused_version=token.version
        )
    except RefreshUnavailable as exc:
        return failed_result(REFRESH_UNAVAILABLE_CODE, f"the OAuth token could not be refreshed: {exc}")
    if fresh is None:
        return failed_result(REAUTHORIZATION_CODE, "the OAuth grant is revoked or expired", REAUTHORIZE_HINT)
    return await run(verifier, draft, fresh.secret, workspace_id=workspace_id, subject=subject)
