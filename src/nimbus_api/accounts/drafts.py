"""Account drafts: what an account will be, before it is saved, in plain values.

A draft is built from a create payload (``from_create``), or from the stored row merged with a PATCH
(``from_account`` + ``merge_patch``), so the same checks apply to the combined result (a port changed
alone must still agree with the stored mode). Connection validation runs on a draft, never on a row.

Stored secrets are not decrypted to build a draft: the draft holds ``STORED`` in their place, and
``connection_changed`` tells whether live validation must run before the draft may replace the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nimbus_api.accounts.schemas import EmailAccountCreate, ImapSettingsPatch, SmtpSettingsPatch, check_mode_port
from nimbus_api.imap import ImapServer
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.problems import FieldError, ValidationProblem
from nimbus_api.kit.validators import email_domain
from nimbus_api.models import EmailAccount
from nimbus_api.providers.presets import suggested_daily_limit
from nimbus_api.smtp.client import SmtpServer
from nimbus_api.validation.flow import MailboxUnderTest


class _StoredSecret(Secret):
    """Marks "a secret is stored and unchanged": never written, never revealed."""

    def __init__(self) -> None:
        super().__init__("")

    def __bool__(self) -> bool:
        return True


STORED: Secret = _StoredSecret()


def is_stored(secret: Secret | None) -> bool:
    return isinstance(secret, _StoredSecret)


@dataclass(frozen=True)
class ServerDraft:
    host: str
    port: int
    mode: str
    username: str | None
    password: Secret | None
    folder: str | None = None
    allow_plaintext_auth: bool = False


@dataclass(frozen=True)
class AccountDraft:
    email: str
    domain: str
    smtp: ServerDraft
    imap: ServerDraft | None
    from_name: str | None = None
    dkim_selector: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    #: "oauth2": the servers' passwords are the OAuth access token, never stored as passwords (``oauth``)
    auth_method: str = "password"


def from_create(payload: EmailAccountCreate) -> AccountDraft:
    smtp, imap = payload.smtp, payload.imap
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
            allow_plaintext_auth=smtp.allow_plaintext_auth,
        ),
        imap=ServerDraft(
            host=imap.host,
            port=imap.port,
            mode=imap.mode,
            username=imap.username,
            password=Secret(imap.password.get_secret_value()),
            folder=imap.folder,
            allow_plaintext_auth=imap.allow_plaintext_auth,
        )
        if imap
        else None,
        from_name=payload.from_name,
        dkim_selector=payload.dkim_selector,
        fields=fields,
    )


def from_account(account: EmailAccount, stored_kinds: set[str]) -> AccountDraft:
    """An OAuth account's servers hold ``STORED`` too: their secret is the stored token (``oauth.verify``
    puts it in place of the placeholders)."""

    def secret(kind: str) -> Secret | None:
        return STORED if kind in stored_kinds or account.auth_method == "oauth2" else None

    return AccountDraft(
        email=account.email,
        domain=email_domain(account.email),
        smtp=ServerDraft(
            host=account.smtp_host,
            port=account.smtp_port,
            mode=account.smtp_mode,
            username=account.smtp_username,
            password=secret("smtp_password"),
            allow_plaintext_auth=account.smtp_allow_plaintext_auth,
        ),
        imap=ServerDraft(
            host=account.imap_host,
            port=account.imap_port or 0,
            mode=account.imap_mode or "",
            username=account.imap_username,
            password=secret("imap_password"),
            folder=account.imap_folder,
            allow_plaintext_auth=account.imap_allow_plaintext_auth,
        )
        if account.imap_host
        else None,
        from_name=account.from_name,
        dkim_selector=account.dkim_selector,
        auth_method=account.auth_method,
    )


def merge_server(
    current: ServerDraft | None, patch: SmtpSettingsPatch | ImapSettingsPatch, section: str
) -> ServerDraft:
    """Apply the fields a PATCH sent to the stored settings, then check the combination."""
    base = current or ServerDraft(host="", port=0, mode="", username=None, password=None, folder="INBOX")
    changes: dict[str, Any] = {}
    for name in patch.model_fields_set:
        value = getattr(patch, name)
        if name == "password" and value is not None:
            value = Secret(value.get_secret_value())
        if name == "allow_plaintext_auth":
            value = bool(value)
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


def connection_changed(before: AccountDraft, after: AccountDraft) -> bool:
    """True when what validation proves (hosts, modes, users, secrets, folder, DKIM selector) changed."""

    def key(server: ServerDraft | None) -> tuple[Any, ...] | None:
        if server is None:
            return None
        secret = "stored" if is_stored(server.password) else (server.password.reveal() if server.password else None)
        return (
            server.host,
            server.port,
            server.mode,
            server.username,
            secret,
            server.folder,
            server.allow_plaintext_auth,
        )

    return (key(before.smtp), key(before.imap), before.dkim_selector) != (
        key(after.smtp),
        key(after.imap),
        after.dkim_selector,
    )


def mailbox_under_test(draft: AccountDraft) -> MailboxUnderTest:
    """The draft as validation sees it. Every ``STORED`` secret must have been revealed before."""
    for server in (draft.smtp, draft.imap):
        if server is not None and is_stored(server.password):
            raise RuntimeError("reveal stored secrets before validating")  # a programming error
    imap = draft.imap
    return MailboxUnderTest(
        email=draft.email,
        domain=draft.domain,
        from_name=draft.from_name,
        dkim_selector=draft.dkim_selector,
        smtp=SmtpServer(
            host=draft.smtp.host,
            port=draft.smtp.port,
            mode=draft.smtp.mode,  # type: ignore[arg-type]
            username=draft.smtp.username,
            password=draft.smtp.password,
            allow_plaintext_auth=draft.smtp.allow_plaintext_auth,
            auth_mechanism="oauth2" if draft.auth_method == "oauth2" else "password",
        ),
        imap=ImapServer(
            host=imap.host,
            port=imap.port,
            mode=imap.mode,  # type: ignore[arg-type]
            username=imap.username or "",
            password=imap.password or Secret(""),
            folder=imap.folder or "INBOX",
            allow_plaintext_auth=imap.allow_plaintext_auth,
            auth_mechanism="oauth2" if draft.auth_method == "oauth2" else "password",
        )
        if imap
        else None,
    )
