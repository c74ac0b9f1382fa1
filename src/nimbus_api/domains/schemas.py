from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

DomainDnsStatus = TypeAliasType("DomainDnsStatus", Literal["unknown", "pass", "warn", "fail"])
DomainBlocklistStatus = TypeAliasType("DomainBlocklistStatus", Literal["unknown", "clean", "listed"])
DomainCheckStatus = TypeAliasType("DomainCheckStatus", Literal["pass", "warn", "fail", "unknown"])
DomainSampleSource = TypeAliasType("DomainSampleSource", Literal["roundtrip", "sent"])
DomainCheckRecord = TypeAliasType("DomainCheckRecord", Literal["mx", "spf", "dkim", "dmarc", "alignment", "blocklists"])


class DomainRead(BaseModel):
    id: uuid.UUID
    name: str
    is_paused: bool = Field(description="Every inbox of the domain is out of rotation while true.")
    paused_reason: str | None = Field(
        default=None, description="The first domain-wide problem that paused it (`dns.dmarc_invalid`, ...)."
    )
    dns_status: DomainDnsStatus = Field(
        default="unknown", description="The latest verdict over MX, SPF, DKIM and DMARC."
    )
    blocklist_status: DomainBlocklistStatus = Field(default="unknown", description="The latest blocklist verdict.")
    health_checked_at: datetime | None = Field(default=None, description="When the domain was last checked.")
    account_count: int = Field(description="Email accounts of this workspace on the domain.")
    created_at: datetime
    updated_at: datetime


class DomainCheckRead(BaseModel):
    record: DomainCheckRecord
    status: DomainCheckStatus
    code: str | None = Field(description="Stable code of the failure (`dns.spf_missing`, `dmarc.misaligned`...).")
    detail: dict[str, Any] = Field(description="What the check found (records, signatures, lists and answers).")
    checked_at: datetime
    changed_at: datetime = Field(description="When the status last changed.")
    previous_status: DomainCheckStatus | None = Field(description="The status before that change.")


class DomainSampleRead(BaseModel):
    """The message alignment was judged on: where it came from and the header fields read (no body)."""

    source: DomainSampleSource
    account_id: uuid.UUID | None
    captured_at: datetime
    headers: dict[str, list[str]] = Field(
        description="Received, DKIM-Signature, From, Authentication-Results and Return-Path, as found."
    )


class DomainHealthRead(DomainRead):
    checks: list[DomainCheckRead] = Field(description="The latest result of each check, in a fixed order.")
    sample: DomainSampleRead | None = Field(description="The captured message; none until an account is verified.")


class DomainPage(BaseModel):
    data: list[DomainRead]
    next_cursor: str | None
