"""The warmup resource of an email account (``/v1/email-accounts/{id}/warmup``): in and out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import PatchModel, not_null

StageNumber = Annotated[int, Field(ge=0, le=5)]
PausedRateName = TypeAliasType("PausedRateName", Literal["bounce_rate_7d", "complaint_rate_7d"])
Comparison = TypeAliasType("Comparison", Literal["at_least", "at_most"])
RequirementName = TypeAliasType(
    "RequirementName", Literal["warmup_sent_total", "overall_score", "bounce_rate_7d", "complaint_rate_7d"]
)


class WarmupUpdate(PatchModel):
    """Only the fields given change."""

    enabled: bool | None = not_null(description="Take part in the warmup exchange (`warmup_enabled`).")
    stage_override: StageNumber | None = Field(
        default=None,
        description="A number pins the stage (as PATCH of the account's `current_stage` does); null clears the "
        "override and the platform computes the stage again at once.",
    )


class PauseReasonOut(BaseModel):
    rate: PausedRateName
    value: float = Field(description="The inbox's 7-day rate, percent.")
    threshold: float = Field(description="Warmup pauses while the rate is over this (percent, a setting).")


class Requirement(BaseModel):
    name: RequirementName
    comparison: Comparison = Field(description="`at_least`: `actual` must reach `required`; `at_most`: not exceed it.")
    required: float
    actual: float
    met: bool


class NextStage(BaseModel):
    stage: int
    daily_limit: int | None = Field(description="That stage's daily send limit; null: the configured one.")
    requirements: list[Requirement] = Field(description="Every condition of that stage.")
    missing: list[Requirement] = Field(description="The conditions not met yet.")


class WarmupStatus(BaseModel):
    account_id: uuid.UUID
    enabled: bool = Field(description="The inbox takes part in the warmup exchange.")
    stage: int = Field(description="`current_stage`, what rotation and the daily limit use.")
    stage_overridden: bool = Field(description="A person set the stage; the platform does not change it.")
    stage_override: int | None
    computed_stage: int = Field(
        description="The stage the stage table gives now; applied within minutes unless overridden."
    )
    paused: bool = Field(description="A 7-day rate is over its threshold: no warmup mail, no graduation.")
    reasons: list[PauseReasonOut] = Field(description="Why warmup is paused (empty when it is not).")
    next_stage: NextStage | None = Field(description="The next stage's requirements; null at stage 5.")
    warmup_sent_total: int
    warmup_progress: float = Field(description="Cosmetic 0..100 progress toward stage 5.")
    cooldown_until: datetime | None = Field(description="No sending (campaigns or warmup) before this time.")
    in_cooldown: bool
    daily_send_limit: int = Field(description="The configured ceiling.")
    stage_daily_limit: int | None = Field(description="The current stage's limit; null: none (stage 5).")
    effective_daily_send_limit: int = Field(description="min(configured ceiling, the stage's limit): what is used.")
