from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import SINGLE_LINE_PATTERN, StrictModel, as_sent
from nimbus_api.kit.validators import EmailAddress

SuppressionReason = TypeAliasType("SuppressionReason", Literal["unsubscribed", "hard_bounce", "complaint", "manual"])
Detail = Annotated[str, Field(min_length=1, max_length=500, pattern=SINGLE_LINE_PATTERN), as_sent(500)]


class SuppressionCreate(StrictModel):
    email: EmailAddress
    detail: Detail | None = Field(default=None, description="Why, for people.")


class SuppressionRead(BaseModel):
    id: uuid.UUID
    email: str
    reason: SuppressionReason
    detail: str | None
    created_at: datetime


class SuppressionPage(BaseModel):
    data: list[SuppressionRead]
    next_cursor: str | None
