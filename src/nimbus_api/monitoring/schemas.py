"""The monitoring read. Every figure says the window it covers; sections other work fills in later
(per-record domain checks, score components, blocklist listings) are optional and say their source."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.alerts.schemas import AlertRead

WindowName = TypeAliasType("WindowName", Literal["24h", "7d"])
RecordStatus = TypeAliasType("RecordStatus", Literal["pass", "warn", "fail", "unknown"])
DnsSource = TypeAliasType("DnsSource", Literal["verification", "domain_check"])


class ScoreSection(BaseModel):
    overall_score: float = Field(ge=0, le=100)
    reputation_score: float = Field(ge=0, le=100)
    current_stage: int
    warmup_progress: float
    bounce_rate_7d: float = Field(description="Percent of sends, over the last 7 UTC days.")
    complaint_rate_7d: float = Field(description="Percent of sends, over the last 7 UTC days.")
    rates_window: WindowName = "7d"
    cooldown_until: datetime | None
    components: dict[str, Any] | None = Field(
        description="The score's components (value, weight, data) when the health engine has stored them; "
        "null until then."
    )


class SendWindow(BaseModel):
    """Send attempts in one window: each accepted message is one attempt (the delivering one), each
    attempt that did not deliver is one more (its outcome counted in `not_accepted`)."""

    window: WindowName
    since: datetime
    attempts: int = Field(ge=0)
    accepted: int = Field(ge=0, description="Messages the server accepted (sent_at in the window).")
    not_accepted: dict[str, int] = Field(
        description="Attempts that did not deliver, by outcome (`transient`, `failed`, `hard_bounce`, "
        "`credential`, `unknown`, `relay_denied`)."
    )
    success_rate: float | None = Field(description="accepted / attempts, percent; null with no attempts.")


class ConnectionWindow(BaseModel):
    """SMTP sessions in one window: an attempt whose connection, TLS or login failed (or whose session
    broke before the final dot) is a connection failure; every other attempt had a working session."""

    window: WindowName
    since: datetime
    attempts: int = Field(ge=0)
    failures: int = Field(ge=0)
    failures_by_code: dict[str, int]
    success_rate: float | None = Field(description="(attempts - failures) / attempts, percent; null: none.")


class SyncSection(BaseModel):
    configured: bool = Field(description="False: the inbox has no IMAP settings (nothing is read).")
    status: str | None = Field(description="`pending`, `ok` or `failing` (null when not configured).")
    last_success_at: datetime | None
    last_poll_at: datetime | None
    next_poll_at: datetime | None
    lag_seconds: float | None = Field(
        description="Now minus the last successful poll (or the sync's start when none succeeded yet)."
    )
    consecutive_failures: int
    last_error_code: str | None
    failing_since: datetime | None


class DnsRecord(BaseModel):
    record: str = Field(description="`mx`, `spf`, `dkim`, `dmarc`, and `alignment` once the domain was re-checked.")
    status: RecordStatus
    code: str | None
    detail: str | None
    checked_at: datetime | None
    source: DnsSource = Field(
        description="`verification`: the inbox's last connect-time check; `domain_check`: the domain's re-check."
    )


class DnsSection(BaseModel):
    domain_id: uuid.UUID
    domain: str
    status: str = Field(description="The domain's latest DNS verdict: `unknown`, `pass`, `warn`, `fail`.")
    checked_at: datetime | None = Field(description="When the domain's health was last checked.")
    is_paused: bool
    paused_reason: str | None
    records: list[DnsRecord]


class BlocklistSection(BaseModel):
    status: str = Field(description="`unknown`, `clean` or `listed`: the domain and its sending IPs.")
    checked_at: datetime | None
    listings: list[dict[str, Any]] | None = Field(
        default=None, description="The per-list answers of the latest blocklist check (null before the first one)."
    )


class Monitoring(BaseModel):
    account_id: uuid.UUID
    email: str
    generated_at: datetime
    score: ScoreSection
    sends: list[SendWindow]
    smtp_connections: list[ConnectionWindow]
    sync: SyncSection
    dns: DnsSection
    blocklist: BlocklistSection
    active_alerts: list[AlertRead] = Field(description="Active alerts on this inbox or its domain.")
