"""What the health routes answer: the score, its band, and every component with the data behind it."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.health.score import Band, ComponentKey

HealthBand = TypeAliasType("HealthBand", Band)
HealthComponentKey = TypeAliasType("HealthComponentKey", ComponentKey)
DataValue = float | int | str | None


class HealthComponent(BaseModel):
    key: HealthComponentKey
    label: str = Field(description="What the component measures.")
    value: float | str | None = Field(
        description="The rate (percent), count or verdict judged; `null` when there is nothing to judge yet."
    )
    score: float = Field(ge=0, le=100, description="The component's score (50: neutral, e.g. below its sample).")
    weight: float = Field(gt=0, description="Its weight in the overall score (the weights sum to 100).")
    reputation: bool = Field(description="It is part of the reputation score too.")
    data: dict[str, DataValue] = Field(
        description="What the value was computed from: `numerator`, `denominator`, `window_days` and "
        "`min_sample` for rates and counts; `verdict` or `status` for verdicts."
    )


class HealthRead(BaseModel):
    account_id: uuid.UUID
    overall_score: float = Field(ge=0, le=100)
    reputation_score: float = Field(ge=0, le=100)
    band: HealthBand
    computed_at: datetime | None = Field(
        description="When the stored scores were computed; `null`: not yet (components show the inbox's "
        "verdicts and no activity, as the first recompute will)."
    )
    components: list[HealthComponent]


class HealthDay(BaseModel):
    day: date = Field(description="The UTC day; its values are the day's last recompute.")
    overall_score: float = Field(ge=0, le=100)
    reputation_score: float = Field(ge=0, le=100)
    band: HealthBand


class HealthHistory(BaseModel):
    account_id: uuid.UUID
    days: int = Field(description="The window asked for: today and the days before it.")
    data: list[HealthDay] = Field(description="Oldest first; a day without a recompute has no entry.")
