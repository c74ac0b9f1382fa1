"""Email-account input and output models.

Passwords come in as ``SecretStr`` and go out only as ``password_set: true``. Mode and port are checked
against each other: a well-known implicit-TLS port (465, 993) needs ``ssl``; a port where TLS starts
in-band (25, 587, 143) cannot be ``ssl``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import (
    NO_NUL_PATTERN,
    SINGLE_LINE_PATTERN,
    UNIQUE_ITEMS,
    PatchModel,
    TlsMode,
    as_sent,
    not_null,
)
from nimbus_api.kit.validators import (
    DnsLabel,
    EmailAddress,
    HeaderText,
    Hostname,
    Port,
    SingleLine,
    StrictModel,
)
from nimbus_api.provider_quotas.schemas import ProviderQuotaOut, SesApiIn
from nimbus_api.providers.presets import ProviderId
from nimbus_api.validation.schemas import VerificationResult

Mode = TlsMode
CampaignType = TypeAliasType("CampaignType", Literal["cold", "nurture"])
CampaignTypes = Annotated[list[CampaignType], Field(min_length=1, max_length=2, json_schema_extra=UNIQUE_ITEMS)]
Password = Annotated[SecretStr, Field(min_length=1, max_length=1024)]
Folder = Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE_PATTERN), as_sent(200)]
NewContactsLimit = Annotated[int, Field(ge=1, le=100_000)]
MaxConnections = Annotated[int, Field(ge=1, le=10)]
SendInterval = Annotated[int, Field(ge=0, le=86_400)]
Stage = Annotated[int, Field(ge=0, le=5)]

_IMPLICIT_TLS_PORTS = {465: "SMTP", 993: "IMAP"}
_IN_BAND_TLS_PORTS = {25: "SMTP", 587: "SMTP", 143: "IMAP"}


def check_mode_port(mode: str | None, port: int | None) -> None:
    if mode is None or port is None:
        return
    if port in _IMPLICIT_TLS_PORTS and mode != "ssl":
        raise ValueError(f"port {port} is implicit TLS: use mode 'ssl' (or another port for '{mode}')")
    if port in _IN_BAND_TLS_PORTS and mode == "ssl":
        raise ValueError(f"port {port} starts in cleartext: use mode 'starttls' (implicit TLS is port 465/993)")


def _mode_matches_port(mode: str | None, info: ValidationInfo) -> str | None:
    check_mode_port(mode, info.data.get("port"))
    return mode


class SmtpSettingsIn(StrictModel):
    host: Hostname
    port: Port
    mode: Mode = Field(description="`ssl`: implicit TLS; `starttls`: STARTTLS required; `none`: cleartext.")
    username: SingleLine | None = Field(default=None, description="Leave out for a relay without AUTH.")
    password: Password | None = None
    allow_plaintext_auth: bool = Field(
        default=False, description="Allow sending the password over a connection without TLS (mode `none`)."
    )

    _mode = field_validator("mode")(_mode_matches_port)

    @model_validator(mode="after")
    def _password_needs_username(self) -> SmtpSettingsIn:
        if self.password is not None and self.username is None:
            raise ValueError("username is required when a password is given")
        return self


class ImapSettingsIn(StrictModel):
    host: Hostname
    port: Port
    mode: Mode
    username: SingleLine
    password: Password
    folder: Folder = Field(default="INBOX", description="Folder where replies arrive, e.g. `Posteingang`.")
    allow_plaintext_auth: bool = False

    _mode = field_validator("mode")(_mode_matches_port)


class SmtpSettingsPatch(PatchModel):
    host: Hostname | None = not_null()
    port: Port | None = not_null()
    mode: Mode | None = not_null()
    username: SingleLine | None = None
    password: Password | None = None
    allow_plaintext_auth: bool | None = None

    _mode = field_validator("mode")(_mode_matches_port)


class ImapSettingsPatch(PatchModel):
    host: Hostname | None = not_null()
    port: Port | None = not_null()
    mode: Mode | None = not_null()
    username: SingleLine | None = not_null()
    password: Password | None = not_null()
    folder: Folder | None = None
    allow_plaintext_auth: bool | None = None

    _mode = field_validator("mode")(_mode_matches_port)


class _AccountFields(StrictModel):
    from_name: HeaderText | None = None
    reply_to: EmailAddress | None = None
    label: HeaderText | None = None
    description: Annotated[str, Field(max_length=2000, pattern=NO_NUL_PATTERN)] | None = None
    dkim_selector: DnsLabel | None = Field(default=None, description="Selector of the DKIM key in DNS.")
    sync_interval_seconds: Annotated[int, Field(ge=30, le=600)] = 120
    campaign_types: CampaignTypes = Field(
        default=["cold", "nurture"], description="The kinds of campaign the inbox sends for; each at most once."
    )
    is_active: bool = True
    daily_new_contacts_limit: NewContactsLimit | None = Field(
        default=None, description="Step-1 sends (first contact with a person) per UTC day; null: no limit of its own."
    )
    max_connections: MaxConnections = Field(default=1, description="Concurrent SMTP connections to the server.")
    min_send_interval_seconds: SendInterval = Field(default=0, description="Least gap between two sends.")
    warmup_enabled: bool = Field(default=False, description="Take part in the warmup exchange.")

    @field_validator("campaign_types")
    @classmethod
    def _unique_types(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("campaign types must not repeat")
        return value


class EmailAccountCreate(_AccountFields):
    email: EmailAddress = Field(description="The one sending address of this account.")
    provider: ProviderId = "custom"
    smtp: SmtpSettingsIn
    imap: ImapSettingsIn | None = Field(default=None, description="Without IMAP: no reply or bounce sync.")
    daily_send_limit: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None,
        description="The ceiling of sends per UTC day; defaults to the provider preset's (Google Workspace 40, "
        "Gmail 20, Microsoft 365 30), else 100. The limit in force ramps with the warmup stage up to it "
        "(`effective_daily_send_limit`).",
    )


class EmailAccountUpdate(PatchModel):
    """Partial update: only the fields given change. ``imap: null`` removes the IMAP settings."""

    from_name: HeaderText | None = None
    reply_to: EmailAddress | None = None
    label: HeaderText | None = None
    description: Annotated[str, Field(max_length=2000, pattern=NO_NUL_PATTERN)] | None = None
    provider: ProviderId | None = not_null()
    smtp: SmtpSettingsPatch | None = not_null()
    imap: ImapSettingsPatch | None = None
    dkim_selector: DnsLabel | None = None
    daily_send_limit: Annotated[int, Field(ge=1, le=100_000)] | None = not_null()
    sync_interval_seconds: Annotated[int, Field(ge=30, le=600)] | None = not_null()
    campaign_types: CampaignTypes | None = not_null(description="Each at most once.")
    is_active: bool | None = not_null()
    daily_new_contacts_limit: NewContactsLimit | None = Field(default=None, description="null removes the limit.")
    max_connections: MaxConnections | None = not_null()
    min_send_interval_seconds: SendInterval | None = not_null()
    current_stage: Stage | None = not_null(
        description="Set the warm-up stage of an inbox warmed elsewhere; recorded as a `stage_changed` event. "
        "It holds (`stage_override`) until cleared with `stage_override: null`.",
    )
    stage_override: Stage | None = Field(
        default=None,
        description="null: clear a person's stage, the platform computes it again at once from the stage "
        "table; a number: the same as `current_stage`.",
    )
    warmup_enabled: bool | None = not_null(description="Take part in the warmup exchange (or leave it).")
    warmup_daily_limit: Annotated[int, Field(ge=0, le=500)] | None = Field(
        default=None,
        description="Warmup messages a day, replies included, apart from the campaign budget; null: the "
        "deployment's default (`NIMBUS_WARMUP_DAILY_LIMIT`).",
    )
    ses_api: SesApiIn | None = Field(
        default=None,
        description="Amazon SES API credentials to read the send quota with (write-only; null removes them). "
        "The quota is read within a minute, then hourly; `provider_quota` shows it.",
    )

    @field_validator("campaign_types")
    @classmethod
    def _unique_types(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("campaign types must not repeat")
        return value


# --- output -------------------------------------------------------------------------------------


class SmtpSettingsOut(BaseModel):
    host: str
    port: int
    mode: Mode
    username: str | None
    password_set: bool
    allow_plaintext_auth: bool


class ImapSettingsOut(BaseModel):
    host: str
    port: int
    mode: Mode
    username: str
    folder: str
    password_set: bool
    allow_plaintext_auth: bool


SyncState = TypeAliasType("SyncState", Literal["pending", "ok", "failing"])


class SyncStatusOut(BaseModel):
    """How reading this inbox over IMAP goes (README: the sync)."""

    status: SyncState = Field(description="`pending`: not polled yet; `failing`: the last polls failed.")
    last_success_at: datetime | None
    last_poll_at: datetime | None
    next_poll_at: datetime
    lag_seconds: float | None = Field(
        description="How far behind reading was at the last poll: 0 when it succeeded, else the seconds from "
        "the last success (or the start of the sync) to that failed attempt; null before the first poll. The "
        "lag now is the time since `last_success_at`."
    )
    consecutive_failures: int
    last_error_code: str | None = Field(description="An `imap.*` code, e.g. `imap.auth_failed`.")
    last_error_detail: str | None
    failing_since: datetime | None
    messages_stored: int


AuthMethod = TypeAliasType("AuthMethod", Literal["password", "oauth2"])


class EmailAccountRead(BaseModel):
    id: uuid.UUID
    email: str
    domain_id: uuid.UUID
    domain: str
    from_name: str | None
    reply_to: str | None
    label: str | None
    description: str | None
    provider: ProviderId
    auth_method: AuthMethod = Field(
        description="`password`: the stored passwords log in; `oauth2`: an OAuth access token does (connected "
        "with `POST /v1/oauth/{provider}/authorize`; `password_set` is then false, the tokens are never shown)."
    )
    smtp: SmtpSettingsOut
    imap: ImapSettingsOut | None
    dkim_selector: str | None
    daily_send_limit: int
    daily_new_contacts_limit: int | None
    max_connections: int
    min_send_interval_seconds: int
    last_sent_at: datetime | None
    sync_interval_seconds: int
    campaign_types: list[CampaignType]
    is_active: bool
    overall_score: float
    reputation_score: float
    warmup_progress: float
    current_stage: int = Field(ge=0, le=5)
    stage_override: int | None = Field(
        description="Set when a person chose the stage: the platform does not change it until cleared."
    )
    effective_daily_send_limit: int = Field(
        description="`daily_send_limit` (the configured ceiling) ramped by the stage: what sending uses today."
    )
    bounce_rate_7d: float = Field(description="Percent: permanent bounces / sends over the last 7 days (UTC).")
    complaint_rate_7d: float = Field(description="Percent: complaints / sends over the last 7 days (UTC).")
    sync: SyncStatusOut | None = Field(description="The IMAP sync (null without IMAP).")
    warmup_enabled: bool = Field(description="Whether the inbox takes part in the warmup exchange.")
    warmup_daily_limit: int | None = Field(description="Its own daily warmup count; null: the deployment's default.")
    warmup_sent_total: int = Field(description="Warmup messages it has sent in all (accepted by its SMTP server).")
    cooldown_until: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    last_verification: VerificationResult | None = Field(description="Latest result of the connect-time checks.")
    verification_locked_at: datetime | None = Field(
        description="Set after too many failed logins; a PATCH of the connection settings clears it."
    )
    ses_api_configured: bool = Field(description="SES API credentials are stored (they are never returned).")
    provider_quota: ProviderQuotaOut | None = Field(description="The SES send quota (null without SES credentials).")
    created_at: datetime
    updated_at: datetime


class EmailAccountPage(BaseModel):
    data: list[EmailAccountRead]
    next_cursor: str | None = Field(description="Pass as `cursor` to fetch the next page; null at the end.")


class AccountEventRead(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    kind: str = Field(
        description="`stage_changed`, `stage_override_cleared`, `cooldown`, `paused` or `daily_limit_lowered` "
        "(to the SES quota)."
    )
    actor: str = Field(description="`api_key:<id>`, `system:<task>` or `platform` (stage table, cooldown).")
    detail: dict[str, Any] = Field(description='`stage_changed`: `{"from": 1, "to": 4}`.')
    created_at: datetime


class AccountEventPage(BaseModel):
    data: list[AccountEventRead]
    next_cursor: str | None
