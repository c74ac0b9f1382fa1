"""The SES API credentials an account may hold (write-only) and the quota it shows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr

from nimbus_api.kit.validators import StrictModel
from nimbus_api.provider_quotas.ses import REGION_PATTERN


class SesApiIn(StrictModel):
    """Amazon SES API credentials used only to read the send quota (``ses:GetSendQuota``); encrypted at
    once, never returned (the account shows ``ses_api_configured``)."""

    access_key_id: Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Z0-9]+$")]
    secret_access_key: Annotated[SecretStr, Field(min_length=1, max_length=256)]
    region: Annotated[str, Field(min_length=9, max_length=30, pattern=REGION_PATTERN)] = Field(
        description="The SES region of the sending account, e.g. `eu-west-1`."
    )


class ProviderQuotaOut(BaseModel):
    """The provider's send quota as last read, and how the last read went."""

    provider: Literal["ses"]
    region: str
    max_24_hour_send: float | None = Field(
        description="SES Max24HourSend: sends the SES account may make in 24 hours (-1: unlimited); null "
        "until read. The inbox's `daily_send_limit` is kept at or under it."
    )
    sent_last_24_hours: float | None = Field(description="SES SentLast24Hours (the whole SES account).")
    max_send_rate: float | None = Field(description="SES MaxSendRate: messages per second.")
    read_at: datetime | None = Field(description="When the figures above were read.")
    checked_at: datetime | None = Field(description="The last read attempt; null: due now.")
    error_code: str | None = Field(
        description="Why the last attempt failed (`ses.auth_failed`, `ses.access_denied`, `ses.throttled`, "
        "`ses.unreachable`, `ses.host_not_allowed`, `ses.host_unresolvable`, `ses.error`); null when it worked."
    )
    error_detail: str | None
