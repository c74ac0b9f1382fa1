from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field


class WarmupDay(BaseModel):
    """One UTC day of an inbox's warmup exchange. The first five count this inbox's own warmup sends (by the
    day they were sent) and what became of them at the receiving inboxes; the last two count what it
    received (by the day its sync found them)."""

    day: date
    sent: int = Field(description="Warmup messages this inbox sent (accepted by its SMTP server), replies included.")
    landed_inbox: int = Field(description="Of those, found in the receiving inbox's INBOX.")
    landed_junk: int = Field(description="Of those, found in the receiving inbox's Junk folder.")
    rescued: int = Field(description="Of those, moved out of Junk into the inbox by the receiving inbox.")
    replied: int = Field(description="Of those, answered in thread by the receiving inbox.")
    received: int = Field(description="Warmup messages this inbox received.")
    received_in_junk: int = Field(description="Of those, found in this inbox's Junk folder (and moved out).")


class WarmupActivity(BaseModel):
    account_id: uuid.UUID
    days: list[WarmupDay] = Field(description="Oldest first, one entry per day, today (UTC) last.")
