from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from nimbus_api.kit.validators import EmailAddress, SingleLine, StrictModel

SuppressionReason = Literal["unsubscribed", "hard_bounce", "complaint", "manual"]


class SuppressionCreate(StrictModel):
    email: EmailAddress
    detail: Annotated[SingleLine, Field(max_length=500)] | None = Field(default=None, description="Why, for people.")


class SuppressionRead(BaseModel):
    id: uuid.UUID
    email: str
    reason: SuppressionReason
    detail: str | None
    created_at: datetime


class SuppressionPage(BaseModel):
    data: list[SuppressionRead]
    next_cursor: str | None
