"""Email-account rules: create, update, delete, read. Flushes, never commits.

The create path runs in three steps, each a function, so that live validation (DNS, SMTP, IMAP,
roundtrip) slots in between *prepare* and *persist* without touching either:

    prepare(payload) -> AccountDraft  (pure: normalized values, secrets as ``Secret``)
    persist(draft)   -> EmailAccount  (domain get-or-create, row insert, secrets encrypted)

Update builds a draft from the stored row merged with the patch, so the same checks apply to the
combined result (a port changed alone must still agree with the stored mode).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.errors import AccountNotFound, EmailAccountExists
from nimbus_api.accounts.schemas import (
    EmailAccountCreate,
    EmailAccountRead,
    EmailAccountUpdate,
    ImapSettingsOut,
    ImapSettingsPatch,
    SmtpSettingsOut,
    SmtpSettingsPatch,
    check_mode_port,
)
from nimbus_api.credentials.vault import CredentialKind, Vault
from nimbus_api.domains import service as domains
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.kit.problems import FieldError, ValidationProblem
from nimbus_api.kit.validators import email_domain
from nimbus_api.models import Credential, Domain, EmailAccount
from nimbus_api.providers.presets import suggested_daily_limit


@dataclass(frozen=True)
class ServerDraft:
    host: str
    port: int
    mode: str
    username: str | None
    password: Secret | None
    folder: str | None = None


@dataclass(frozen=True)
class AccountDraft:
    """Everything an account will be, before it is saved: what live validation checks."""

    email: str
    domain: str
    smtp: ServerDraft
    imap: ServerDraft | None
    fields: dict[str, Any] = field(default_factory=dict)


# --- create ---------------------------------------------------------------------------------------


def prepare(payload: EmailAccountCreate) -> AccountDraft:
    smtp = payload.smtp
    imap = payload.imap
    fields = payload.model_dump(exclude={"email", "smtp", "imap", "daily_send_limit"})
    fields["daily_send_limit"] = payload.daily_send_limit or suggested_daily_limit(payload.provider)
    return AccountDraft(
        email=payload.email,
        domain=email_domain(payload.email),
        smtp=ServerDraft(
            host=smtp.host,
            port=smtp.port,
            mode=smtp.mode,
            username=smtp.username,
            password=Secret(smtp.password.get_secret_value()) if smtp.password else None,
        ),
        imap=ServerDraft(
            host=imap.host,
            port=imap.port,
            mode=imap.mode,
            username=imap.username,
            password=Secret(imap.password.get_secret_value()),
            folder=imap.folder,
        )
        if imap
        else None,
        fields=fields,
    )


async def persist(session: AsyncSession, vault: Vault, workspace_id: uuid.UUID, draft: AccountDraft) -> EmailAccount:
    await _ensure_unique_email(session, workspace_id, draft.email)
    domain = await domains.get_or_create(session, workspace_id, draft.domain)
    account = EmailAccount(workspace_id=workspace_id, domain_id=domain.id, email=draft.email, **draft.fields)
    _apply_servers(account, draft)
    session.add(account)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create of the same address won the race
        raise EmailAccountExists(f"{draft.email} is already connected in this workspace") from exc
    await _store_secrets(session, vault, account, draft)
    return account


async def create(
    session: AsyncSession, vault: Vault, workspace_id: uuid.UUID, payload: EmailAccountCreate
) -> EmailAccount:
    return await persist(session, vault, workspace_id, prepare(payload))


# --- update ---------------------------------------------------------------------------------------


def _merge_server(
    current: ServerDraft | None, patch: SmtpSettingsPatch | ImapSettingsPatch, section: str
) -> ServerDraft:
    """Apply the fields a PATCH sent to the stored settings, then check the combination."""
    base = current or ServerDraft(host="", port=0, mode="", username=None, password=None, folder="INBOX")
    changes: dict[str, Any] = {}
    for name in patch.model_fields_set:
        value = getattr(patch, name)
        if name == "password" and value is not None:
            value = Secret(value.get_secret_value())
        changes[name] = value
    merged = replace(base, **changes)
    required = ["host", "port", "mode"] + (["username", "password"] if section == "imap" else [])
    missing = [name for name in required if not getattr(merged, name)]
    if missing:
        raise ValidationProblem(
            [FieldError(field=f"{section}.{name}", message="Field required", type="missing") for name in missing]
        )
    try:
        check_mode_port(merged.mode, merged.port)
    except ValueError as exc:
        raise ValidationProblem([FieldError(field=f"{section}.mode", message=str(exc), type="value_error")]) from exc
    if section == "smtp" and merged.password is not None and merged.username is None:
        raise ValidationProblem(
            [FieldError(field="smtp.username", message="required when a password is set", type="missing")]
        )
    if section == "imap" and merged.folder is None:
        merged = replace(merged, folder="INBOX")
    return merged


async def draft_of(session: AsyncSession, vault: Vault, account: EmailAccount) -> AccountDraft:
    """The stored account as a draft. Stored secrets stay ciphertext: the draft holds ``STORED``."""
    stored = await vault.kinds_set(session, [account.id])

    def secret(kind: CredentialKind) -> Secret | None:
        return STORED if (account.id, kind) in stored else None

    return AccountDraft(
        email=account.email,
        domain=email_domain(account.email),
        smtp=ServerDraft(
            host=account.smtp_host,
            port=account.smtp_port,
            mode=account.smtp_mode,
            username=account.smtp_username,
            password=secret("smtp_password"),
        ),
        imap=ServerDraft(
            host=account.imap_host,
            port=account.imap_port or 0,
            mode=account.imap_mode or "",
            username=account.imap_username,
            password=secret("imap_password"),
            folder=account.imap_folder,
        )
        if account.imap_host
        else None,
    )


_NOT_NULLABLE = {"provider", "daily_send_limit", "sync_interval_seconds", "campaign_types", "is_active"}


async def update(
    session: AsyncSession,
    vault: Vault,
    workspace_id: uuid.UUID,
    account_id: uuid.UUID,
    patch: EmailAccountUpdate,
) -> EmailAccount:
    account = await get(session, workspace_id, account_id)
    set_fields = patch.model_fields_set
    current = await draft_of(session, vault, account)

    smtp = current.smtp
    if "smtp" in set_fields:
        if patch.smtp is None:
            raise ValidationProblem(
                [FieldError(field="smtp", message="SMTP settings cannot be removed", type="value_error")]
            )
        smtp = _merge_server(current.smtp, patch.smtp, "smtp")
    imap = current.imap
    if "imap" in set_fields:
        imap = None if patch.imap is None else _merge_server(current.imap, patch.imap, "imap")
    draft = AccountDraft(email=account.email, domain=current.domain, smtp=smtp, imap=imap)

    for name in set_fields - {"smtp", "imap"}:
        value = getattr(patch, name)
        if value is None and name in _NOT_NULLABLE:
            raise ValidationProblem([FieldError(field=name, message="may not be null", type="value_error")])
        setattr(account, name, value)
    _apply_servers(account, draft)
    await _store_secrets(session, vault, account, draft)
    await session.flush()
    return account


class _StoredSecret(Secret):
    """Marks "a secret is stored and unchanged": never written, never revealed."""

    def __init__(self) -> None:
        super().__init__("")

    def __bool__(self) -> bool:
        return True


STORED: Secret = _StoredSecret()


# --- shared -----------------------------------------------------------------------------------------


def _apply_servers(account: EmailAccount, draft: AccountDraft) -> None:
    account.smtp_host = draft.smtp.host
    account.smtp_port = draft.smtp.port
    account.smtp_mode = draft.smtp.mode
    account.smtp_username = draft.smtp.username
    imap = draft.imap
    account.imap_host = imap.host if imap else None
    account.imap_port = imap.port if imap else None
    account.imap_mode = imap.mode if imap else None
    account.imap_username = imap.username if imap else None
    account.imap_folder = imap.folder if imap else None


async def _store_secrets(session: AsyncSession, vault: Vault, account: EmailAccount, draft: AccountDraft) -> None:
    wanted: dict[CredentialKind, Secret | None] = {
        "smtp_password": draft.smtp.password,
        "imap_password": draft.imap.password if draft.imap else None,
    }
    for kind, secret in wanted.items():
        if secret is None:
            await vault.remove(session, account.id, kind)
        elif not isinstance(secret, _StoredSecret):
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
                smtp=SmtpSettingsOut(
                    host=a.smtp_host,
                    port=a.smtp_port,
                    mode=a.smtp_mode,
                    username=a.smtp_username,
                    password_set=(a.id, "smtp_password") in stored,
                ),
                imap=ImapSettingsOut(
                    host=a.imap_host,
                    port=a.imap_port or 0,
                    mode=a.imap_mode,
                    username=a.imap_username or "",
                    folder=a.imap_folder or "INBOX",
                    password_set=(a.id, "imap_password") in stored,
                )
                if a.imap_host
                else None,
                dkim_selector=a.dkim_selector,
                daily_send_limit=a.daily_send_limit,
                sync_interval_seconds=a.sync_interval_seconds,
                campaign_types=a.campaign_types,
                is_active=a.is_active,
                overall_score=a.overall_score,
                reputation_score=a.reputation_score,
                warmup_progress=a.warmup_progress,
                current_stage=a.current_stage,
                bounce_rate_7d=a.bounce_rate_7d,
                complaint_rate_7d=a.complaint_rate_7d,
                cooldown_until=a.cooldown_until,
                disabled_at=a.disabled_at,
                disabled_reason=a.disabled_reason,
                created_at=a.created_at,
                updated_at=a.updated_at,
            )
        )
    return out
