"""Email-account rules: create, update, verify, delete, read. Flushes, never commits.

Create: draft from the payload -> address must be free -> the workspace must be below its account limit
(``accounts.limits``) -> live verification of the draft -> the limit again, under the workspace's create
lock -> insert (domain get-or-create, row, encrypted secrets, the verification result; the test message it read
back becomes the domain's alignment sample, ``domains.samples``). A failed check
raises ``VerificationFailed`` (422) before anything is written; a workspace at its limit answers 409
``email_account.limit_reached`` without any network work.

Update: draft from the row merged with the patch. When the connection changed (hosts, modes, users,
secrets, folder, DKIM selector) the merged draft is verified first, stored secrets it still uses being
revealed for that (audited, purpose ``verify``); only a passing draft replaces the old settings, and
``credentials_version`` goes up so pooled connections with the old credentials retire.

Verify: the stored account, secrets revealed (audited), through the same flow; the result is stored.
An OAuth account (``auth_method="oauth2"``) logs in with its access token instead (``oauth.verify``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.accounts import drafts, limits
from nimbus_api.accounts.drafts import AccountDraft, ServerDraft, is_stored
from nimbus_api.accounts.errors import AccountNotFound, EmailAccountExists
from nimbus_api.accounts.schemas import (
    AccountEventRead,
    EmailAccountCreate,
    EmailAccountRead,
    EmailAccountUpdate,
    ImapSettingsOut,
    SmtpSettingsOut,
    SyncStatusOut,
)
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, CredentialKind, Vault
from nimbus_api.domains import samples as domain_samples
from nimbus_api.domains import service as domains
from nimbus_api.events.catalogue import AccountDisabledData, AccountEnabledData
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.kit.problems import FieldError, ValidationProblem
from nimbus_api.models import AccountEvent, Credential, Domain, EmailAccount, MailboxSync
from nimbus_api.oauth import verify as oauth_verify
from nimbus_api.provider_quotas import service as provider_quotas
from nimbus_api.sending.sweeper import hand_back_orphans
from nimbus_api.stages import service as stages
from nimbus_api.stages.limits import effective_limit
from nimbus_api.stages.stages import RateThresholds
from nimbus_api.sync import mailboxes
from nimbus_api.validation.schemas import VerificationResult
from nimbus_api.validation.service import VerificationFailed, VerificationLocked, Verifier

# --- create ---------------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    workspace_id: uuid.UUID,
    payload: EmailAccountCreate,
    *,
    max_accounts: int,
) -> tuple[EmailAccount, VerificationResult]:
    """``max_accounts``: the deployment's limit per workspace (a workspace's own limit overrides it)."""
    draft = drafts.from_create(payload)
    await _ensure_unique_email(session, workspace_id, draft.email)
    await limits.ensure_room(session, workspace_id, max_accounts, lock=False)
    result = await verifier.verify(
        drafts.mailbox_under_test(draft),
        workspace_id=workspace_id,
        subject=Verifier.subject_for_address(workspace_id, draft.email),
    )
    if result.status == "failed":
        raise VerificationFailed(result)
    account = await insert_verified(session, vault, verifier, workspace_id, draft, result, max_accounts=max_accounts)
    return account, result


async def insert_verified(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    workspace_id: uuid.UUID,
    draft: AccountDraft,
    result: VerificationResult,
    *,
    max_accounts: int,
) -> EmailAccount:
    """Save a draft that passed verification (a password account's, or an OAuth connect's: ``oauth``
    stores its tokens after this). The sample's DNS is read before the workspace's lock, which is held
    until commit and so serializes a workspace's creates (a fleet import's rows)."""
    sample = await domain_samples.prepare(verifier.net, result)
    await limits.ensure_room(session, workspace_id, max_accounts, lock=True)
    domain = await domains.get_or_create(session, workspace_id, draft.domain)
    account = EmailAccount(
        workspace_id=workspace_id,
        domain_id=domain.id,
        email=draft.email,
        auth_method=draft.auth_method,
        **draft.fields,
    )
    _apply_servers(account, draft)
    _record(account, result)
    session.add(account)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create of the same address won the race
        raise EmailAccountExists(f"{draft.email} is already connected in this workspace") from exc
    await _store_secrets(session, vault, account, draft)
    await mailboxes.register(session, account)
    await domain_samples.store(session, account, sample)
    return account


# --- update ---------------------------------------------------------------------------------------

_NOT_NULLABLE = {
    "warmup_enabled",
    "provider",
    "daily_send_limit",
    "sync_interval_seconds",
    "campaign_types",
    "is_active",
    "max_connections",
    "min_send_interval_seconds",
    "current_stage",
}


async def update(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    workspace_id: uuid.UUID,
    account_id: uuid.UUID,
    patch: EmailAccountUpdate,
    *,
    actor: Actor,
    stage_rules: RateThresholds | None = None,
    settings: Settings | None = None,
) -> EmailAccount:
    """``stage_rules``: the thresholds to recompute the stage with when the patch clears a stage override
    (None: the periodic stage run does it). ``settings``: an OAuth account's token refresh needs them."""
    account = await get(session, workspace_id, account_id)
    set_fields = patch.model_fields_set
    if account.auth_method == "oauth2":
        _refuse_passwords(patch)
    current = drafts.from_account(account, await _stored_kinds(session, vault, account.id))

    smtp = current.smtp
    if "smtp" in set_fields:
        if patch.smtp is None:
            raise ValidationProblem(
                [FieldError(field="smtp", message="SMTP settings cannot be removed", type="value_error")]
            )
        smtp = drafts.merge_server(current.smtp, patch.smtp, "smtp")
    imap = current.imap
    if "imap" in set_fields:
        imap = None if patch.imap is None else drafts.merge_server(current.imap, patch.imap, "imap")
    for name in set_fields - {"smtp", "imap", "ses_api"}:
        if getattr(patch, name) is None and name in _NOT_NULLABLE:
            raise ValidationProblem([FieldError(field=name, message="may not be null", type="value_error")])
    pinned = _pinned_stage(patch)
    draft = replace(
        current,
        smtp=smtp,
        imap=imap,
        from_name=patch.from_name if "from_name" in set_fields else current.from_name,
        dkim_selector=patch.dkim_selector if "dkim_selector" in set_fields else current.dkim_selector,
    )

    if drafts.connection_changed(current, draft):
        subject = Verifier.subject_for_account(account.id)
        if account.verification_locked_at is not None:
            # A person updating the settings is what lifts the lock: the failed-login count that set it
            # must not refuse this very verification (429) until its window runs out.
            await verifier.clear(subject)
        result = await _verify_draft(session, vault, verifier, account, draft, actor, subject, settings)
        if result.status == "failed":
            raise VerificationFailed(result)
        _record(account, result)
        account.credentials_version += 1
        account.verification_locked_at = None
        await domain_samples.capture(session, verifier.net, account, result)

    if pinned is not None:
        stages.set_override(session, account, pinned, actor=actor.value)
    elif "stage_override" in set_fields:
        await stages.clear_override(session, account, actor=actor.value, settings=stage_rules)
    if "is_active" in set_fields and patch.is_active is not None and patch.is_active != account.is_active:
        _emit_switch(session, account, active=patch.is_active)
    if "ses_api" in set_fields:
        await provider_quotas.set_ses_api(session, vault, account, patch.ses_api)
    if "daily_send_limit" in set_fields:
        provider_quotas.check_limit(account, patch.daily_send_limit)
    for name in set_fields - {"smtp", "imap", "current_stage", "stage_override", "ses_api"}:
        setattr(account, name, getattr(patch, name))
    _apply_servers(account, draft)
    await _store_secrets(session, vault, account, draft)
    await session.flush()
    await mailboxes.register(session, account)
    return account


def _refuse_passwords(patch: EmailAccountUpdate) -> None:
    """An OAuth account logs in with its token: a password sent for it would never be used."""
    for section in ("smtp", "imap"):
        value = getattr(patch, section)
        if value is not None and "password" in value.model_fields_set:
            raise ValidationProblem(
                [
                    FieldError(
                        field=f"{section}.password",
                        message="an OAuth account has no password (re-authorize it instead)",
                        type="value_error",
                    )
                ]
            )


async def _verify_draft(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    account: EmailAccount,
    draft: AccountDraft,
    actor: Actor,
    subject: str,
    settings: Settings | None,
) -> VerificationResult:
    """The checks on a saved account's draft: its stored passwords, or its OAuth token (``oauth.verify``)."""
    if account.auth_method == "oauth2" and settings is not None:
        return await oauth_verify.verify_saved(
            session,
            vault,
            verifier,
            settings,
            account.id,
            draft,
            workspace_id=account.workspace_id,
            actor=actor,
            subject=subject,
        )
    revealed = await _reveal_stored(session, vault, account, draft, actor)
    return await verifier.verify(
        drafts.mailbox_under_test(revealed), workspace_id=account.workspace_id, subject=subject
    )


def _pinned_stage(patch: EmailAccountUpdate) -> int | None:
    """The stage a person pins (``current_stage``, or ``stage_override`` as a number); None when the patch
    pins none. ``current_stage`` with ``stage_override: null`` (or another number) contradicts itself: 422."""
    fields = patch.model_fields_set
    stage = patch.current_stage if "current_stage" in fields else None
    if "stage_override" in fields:
        if stage is not None and patch.stage_override != stage:
            raise ValidationProblem(
                [
                    FieldError(
                        field="stage_override",
                        message="contradicts current_stage: give one of them",
                        type="value_error",
                    )
                ]
            )
        stage = patch.stage_override
    return stage


def _emit_switch(session: AsyncSession, account: EmailAccount, *, active: bool) -> None:
    """A person's `is_active` switch: the inbox joins or leaves the rotation (``account.enabled`` /
    ``account.disabled`` with reason ``manual``). The sender's own pause is ``sending.record``'s."""
    if active:
        events.emit(
            session,
            account.workspace_id,
            "account.enabled",
            AccountEnabledData(account_id=account.id, email=account.email),
        )
    else:
        events.emit(
            session,
            account.workspace_id,
            "account.disabled",
            AccountDisabledData(account_id=account.id, email=account.email, reason="manual", by="person"),
        )


# --- verify ---------------------------------------------------------------------------------------


async def verify(
    session: AsyncSession,
    vault: Vault,
    verifier: Verifier,
    workspace_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    actor: Actor,
    settings: Settings | None = None,
) -> tuple[EmailAccount, VerificationResult]:
    """Re-run the checks on the saved account and store the result (a failure is stored too)."""
    account = await get(session, workspace_id, account_id)
    if account.verification_locked_at is not None:
        raise VerificationLocked(
            "too many failed logins: update the SMTP/IMAP credentials with PATCH, which verifies them again"
        )
    subject = Verifier.subject_for_account(account.id)
    draft = drafts.from_account(account, await _stored_kinds(session, vault, account.id))
    result = await _verify_draft(session, vault, verifier, account, draft, actor, subject, settings)
    _record(account, result)
    if await verifier.auth_locked_for(subject) is not None:
        account.verification_locked_at = utcnow()
    await session.flush()
    await domain_samples.capture(session, verifier.net, account, result)
    return account, result


def record_result(account: EmailAccount, result: VerificationResult) -> None:
    """Store a verification's result on the account (``oauth`` stores a re-authorization's)."""
    _record(account, result)


def apply_servers(account: EmailAccount, draft: AccountDraft) -> None:
    """The draft's hosts, modes and users on the row (``oauth``: a password account switched to OAuth)."""
    _apply_servers(account, draft)


def _record(account: EmailAccount, result: VerificationResult) -> None:
    account.last_verification = result.model_dump(mode="json")
    account.last_verified_at = result.verified_at


async def _stored_kinds(session: AsyncSession, vault: Vault, account_id: uuid.UUID) -> set[str]:
    return {kind for _, kind in await vault.kinds_set(session, [account_id])}


async def _reveal_stored(
    session: AsyncSession, vault: Vault, account: EmailAccount, draft: AccountDraft, actor: Actor
) -> AccountDraft:
    """Replace ``STORED`` placeholders with the decrypted secrets (each decrypt audited)."""

    async def server(section: ServerDraft | None, kind: CredentialKind) -> ServerDraft | None:
        if section is None or not is_stored(section.password):
            return section
        secret = await vault.reveal_for_account(session, account.id, kind, actor=actor, purpose="verify")
        return replace(section, password=secret)

    smtp = await server(draft.smtp, "smtp_password")
    assert smtp is not None
    return replace(draft, smtp=smtp, imap=await server(draft.imap, "imap_password"))


# --- shared -----------------------------------------------------------------------------------------


def _apply_servers(account: EmailAccount, draft: AccountDraft) -> None:
    account.smtp_host = draft.smtp.host
    account.smtp_port = draft.smtp.port
    account.smtp_mode = draft.smtp.mode
    account.smtp_username = draft.smtp.username
    account.smtp_allow_plaintext_auth = draft.smtp.allow_plaintext_auth
    imap = draft.imap
    account.imap_allow_plaintext_auth = imap.allow_plaintext_auth if imap else False
    account.imap_host = imap.host if imap else None
    account.imap_port = imap.port if imap else None
    account.imap_mode = imap.mode if imap else None
    account.imap_username = imap.username if imap else None
    account.imap_folder = imap.folder if imap else None


async def _store_secrets(session: AsyncSession, vault: Vault, account: EmailAccount, draft: AccountDraft) -> None:
    if draft.auth_method == "oauth2":  # its servers' secret is the token (``oauth.tokens``), never a password
        await vault.remove(session, account.id, "smtp_password")
        await vault.remove(session, account.id, "imap_password")
        return
    wanted: dict[CredentialKind, Secret | None] = {
        "smtp_password": draft.smtp.password,
        "imap_password": draft.imap.password if draft.imap else None,
    }
    for kind, secret in wanted.items():
        if secret is None:
            await vault.remove(session, account.id, kind)
        elif not is_stored(secret):
            await vault.store(
                session, workspace_id=account.workspace_id, account_id=account.id, kind=kind, secret=secret
            )


async def _ensure_unique_email(session: AsyncSession, workspace_id: uuid.UUID, email: str) -> None:
    exists = await session.scalar(
        select(EmailAccount.id).where(
            EmailAccount.workspace_id == workspace_id, func.lower(EmailAccount.email) == email.lower()
        )
    )
    if exists is not None:
        raise EmailAccountExists(f"{email} is already connected in this workspace")


# --- read / delete ------------------------------------------------------------------------------------


async def get(session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID) -> EmailAccount:
    account = await session.scalar(
        select(EmailAccount).where(EmailAccount.id == account_id, EmailAccount.workspace_id == workspace_id)
    )
    if account is None:
        raise AccountNotFound()
    return account


async def delete_account(session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID) -> None:
    account = await get(session, workspace_id, account_id)
    await session.execute(delete(Credential).where(Credential.account_id == account.id))
    await session.delete(account)
    await session.flush()
    # Its messages not yet sent lost their inbox (the foreign key set it NULL): to the rest of the pool.
    await hand_back_orphans(session, utcnow(), workspace_id=workspace_id)


@dataclass(frozen=True)
class AccountFilters:
    is_active: bool | None = None
    provider: str | None = None
    domain: str | None = None
    campaign_type: str | None = None
    disabled: bool | None = None
    q: str | None = None


def _filtered(workspace_id: uuid.UUID, filters: AccountFilters) -> Select[EmailAccount]:
    stmt = select(EmailAccount).where(EmailAccount.workspace_id == workspace_id)
    if filters.is_active is not None:
        stmt = stmt.where(EmailAccount.is_active.is_(filters.is_active))
    if filters.provider:
        stmt = stmt.where(EmailAccount.provider == filters.provider)
    if filters.domain:
        stmt = stmt.join(Domain, Domain.id == EmailAccount.domain_id).where(Domain.name == filters.domain.lower())
    if filters.campaign_type:
        stmt = stmt.where(EmailAccount.campaign_types.contains([filters.campaign_type]))
    if filters.disabled is not None:
        stmt = stmt.where(
            EmailAccount.disabled_at.is_not(None) if filters.disabled else EmailAccount.disabled_at.is_(None)
        )
    if filters.q:
        pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
        stmt = stmt.where(or_(EmailAccount.email.ilike(pattern), EmailAccount.label.ilike(pattern)))
    return stmt


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, filters: AccountFilters, cursor: str | None, limit: int
) -> tuple[list[EmailAccount], str | None]:
    rows = list(await session.scalars(paginate(_filtered(workspace_id, filters), EmailAccount.id, cursor, limit)))
    return page_of(rows, limit)


async def to_read(session: AsyncSession, vault: Vault, accounts: list[EmailAccount]) -> list[EmailAccountRead]:
    """Output models; ``password_set`` comes from the credential rows, never from a decrypt."""
    stored = await vault.kinds_set(session, [a.id for a in accounts])
    names: dict[uuid.UUID, str] = {}
    if accounts:
        rows = await session.execute(
            select(Domain.id, Domain.name).where(Domain.id.in_({a.domain_id for a in accounts}))
        )
        names = {row[0]: row[1] for row in rows}
    syncs: dict[uuid.UUID, MailboxSync] = {}
    if accounts:
        found = await session.scalars(select(MailboxSync).where(MailboxSync.account_id.in_([a.id for a in accounts])))
        syncs = {row.account_id: row for row in found}
    out = []
    for a in accounts:
        out.append(
            EmailAccountRead(
                id=a.id,
                email=a.email,
                domain_id=a.domain_id,
                domain=names[a.domain_id],
                from_name=a.from_name,
                reply_to=a.reply_to,
                label=a.label,
                description=a.description,
                provider=a.provider,
                auth_method="oauth2" if a.auth_method == "oauth2" else "password",
                smtp=SmtpSettingsOut(
                    host=a.smtp_host,
                    port=a.smtp_port,
                    mode=a.smtp_mode,
                    username=a.smtp_username,
                    password_set=(a.id, "smtp_password") in stored,
                    allow_plaintext_auth=a.smtp_allow_plaintext_auth,
                ),
                imap=ImapSettingsOut(
                    host=a.imap_host,
                    port=a.imap_port or 0,
                    mode=a.imap_mode,
                    username=a.imap_username or "",
                    folder=a.imap_folder or "INBOX",
                    password_set=(a.id, "imap_password") in stored,
                    allow_plaintext_auth=a.imap_allow_plaintext_auth,
                )
                if a.imap_host
                else None,
                dkim_selector=a.dkim_selector,
                daily_send_limit=a.daily_send_limit,
                daily_new_contacts_limit=a.daily_new_contacts_limit,
                max_connections=a.max_connections,
                min_send_interval_seconds=a.min_send_interval_seconds,
                last_sent_at=a.last_sent_at,
                sync_interval_seconds=a.sync_interval_seconds,
                campaign_types=a.campaign_types,
                is_active=a.is_active,
                overall_score=a.overall_score,
                reputation_score=a.reputation_score,
                warmup_progress=a.warmup_progress,
                current_stage=a.current_stage,
                stage_override=a.stage_override,
                effective_daily_send_limit=effective_limit(a),
                warmup_enabled=a.warmup_enabled,
                warmup_sent_total=a.warmup_sent_total,
                bounce_rate_7d=a.bounce_rate_7d,
                complaint_rate_7d=a.complaint_rate_7d,
                sync=_sync_out(syncs[a.id]) if a.id in syncs else None,
                warmup_daily_limit=a.warmup_daily_limit,
                cooldown_until=a.cooldown_until,
                disabled_at=a.disabled_at,
                disabled_reason=a.disabled_reason,
                last_verification=VerificationResult.model_validate(a.last_verification)
                if a.last_verification
                else None,
                verification_locked_at=a.verification_locked_at,
                ses_api_configured=(a.id, "ses_api") in stored,
                provider_quota=provider_quotas.quota_out(a),
                created_at=a.created_at,
                updated_at=a.updated_at,
            )
        )
    return out


def _sync_out(row: MailboxSync) -> SyncStatusOut:
    lag = None
    if row.last_poll_at is not None:
        lag = round(max((row.last_poll_at - (row.last_success_at or row.created_at)).total_seconds(), 0.0), 3)
    return SyncStatusOut(
        status=row.status,
        last_success_at=row.last_success_at,
        last_poll_at=row.last_poll_at,
        next_poll_at=row.next_poll_at,
        lag_seconds=lag,
        consecutive_failures=row.consecutive_failures,
        last_error_code=row.last_error_code,
        last_error_detail=row.last_error_detail,
        failing_since=row.failing_since,
        messages_stored=row.messages_stored,
    )


async def list_events(
    session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[AccountEventRead], str | None]:
    account = await get(session, workspace_id, account_id)
    stmt = select(AccountEvent).where(AccountEvent.workspace_id == workspace_id, AccountEvent.account_id == account.id)
    rows, next_cursor = page_of(list(await session.scalars(paginate(stmt, AccountEvent.id, cursor, limit))), limit)
    return [
        AccountEventRead(
            id=e.id, account_id=e.account_id, kind=e.kind, actor=e.actor, detail=e.detail, created_at=e.created_at
        )
        for e in rows
    ], next_cursor
