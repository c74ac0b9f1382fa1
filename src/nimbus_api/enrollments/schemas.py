from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import JsonUuid, StrictModel
from nimbus_api.suppressions.schemas import SuppressionReason

EnrollmentStatus = TypeAliasType(
    "EnrollmentStatus", Literal["active", "completed", "replied", "stopped", "bounced", "failed"]
)
MAX_ENROLL = 10_000


class EnrollRequest(StrictModel):
    contact_ids: Annotated[list[JsonUuid], Field(min_length=1, max_length=MAX_ENROLL)] = Field(
        description="Contact ids; one given twice is enrolled once."
    )


class EnrollSuppressed(BaseModel):
    contact_id: uuid.UUID
    email: str
    reason: SuppressionReason = Field(description="Why the address is suppressed.")


class EnrollReport(BaseModel):
    enrolled: int = Field(description="New enrollments: step 1 is due now (within the sending window).")
    already_enrolled: int = Field(description="Contacts enrolled in this campaign before (in any status): skipped.")
    not_found: list[uuid.UUID] = Field(description="Ids that are no contact of this workspace: nothing done.")
    suppressed: list[EnrollSuppressed] = Field(description="Contacts on the suppression list: not enrolled.")


class EnrollmentRead(BaseModel):
    id: uuid.UUID
    campaign_id: uuid.UUID
    contact_id: uuid.UUID
    email: str = Field(description="The contact's address.")
    status: EnrollmentStatus
    next_step: int = Field(description="Position (from 0) of the next step to send.")
    next_send_at: datetime | None = Field(description="When the next step is due; null while in flight or done.")
    account_id: uuid.UUID | None = Field(description="The inbox that sent step 1 (follow-ups go through it).")
    stop_reason: str | None
    replied_at: datetime | None = Field(description="When the contact first replied.")
    auto_replied_at: datetime | None = Field(description="The latest automatic answer.")
    created_at: datetime
    updated_at: datetime


class EnrollmentPage(BaseModel):
    data: list[EnrollmentRead]
    next_cursor: str | None
