from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class DomainRead(BaseModel):
    id: uuid.UUID
    name: str
    is_paused: bool
    account_count: int = Field(description="Email accounts of this workspace on the domain.")
    created_at: datetime
    updated_at: datetime


class DomainPage(BaseModel):
    data: list[DomainRead]
    next_cursor: str | None
