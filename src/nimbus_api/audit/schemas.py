from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    credential: str = Field(description="`smtp_password` or `imap_password`.")
    actor: str = Field(description="`api_key:<id>` or `system:<task>`.")
    purpose: str = Field(description="Why it was decrypted: `verify`, `send`, `imap_sync`, `key_rotation`.")
    created_at: datetime


class AuditPage(BaseModel):
    data: list[AuditEntry]
    next_cursor: str | None
