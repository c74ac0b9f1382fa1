from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from nimbus_api.kit.schemas import StrictModel


class WorkspaceRead(BaseModel):
    id: uuid.UUID
    name: str
    monthly_send_quota: int | None = Field(description="Sends per calendar month (UTC); null: no quota.")
    sent_this_month: int = Field(description="Messages sent since the start of this month (UTC).")
    email_accounts: int = Field(description="Email accounts the workspace holds.")
    max_email_accounts: int = Field(
        description="How many email accounts it may hold: its own limit, set by the operator, or the "
        "deployment's default. Connecting one more at the limit is a 409 `email_account.limit_reached`."
    )
    created_at: datetime


class WorkspaceUpdate(StrictModel):
    monthly_send_quota: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = Field(
        default=None, description="Sends per calendar month (UTC); null removes the quota."
    )
