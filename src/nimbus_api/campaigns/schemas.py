"""Campaign input and output models.

Templates are checked where they come in: each step's subject, text and HTML are compiled and rendered
against a sample contact by their field validators (``campaigns.templates.check_template``), so a bad
template is a 422 naming ``steps.N.subject`` (N counts from 0) and nothing is saved.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator
from typing_extensions import TypeAliasType

from nimbus_api.accounts.schemas import CampaignType
from nimbus_api.campaigns import eligibility
from nimbus_api.campaigns.templates import check_template
from nimbus_api.kit.schemas import (
    NO_NUL_PATTERN,
    SINGLE_LINE_PATTERN,
    UNIQUE_ITEMS,
    InputModel,
    JsonUuid,
    PatchModel,
    StrictModel,
    as_sent,
    not_null,
)
from nimbus_api.kit.validators import HeaderText

CampaignStatus = TypeAliasType("CampaignStatus", Literal["draft", "active", "paused", "completed"])
IneligibleReason = TypeAliasType("IneligibleReason", eligibility.IneligibleReason)
MAX_STEPS = 20
MAX_DELAY_SECONDS = 365 * 86_400
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
ClockTime = Annotated[str, Field(pattern=_HH_MM.pattern, examples=["09:00"], description="`HH:MM`, 24-hour clock.")]
END_OF_DAY = "24:00"
_END = re.compile(r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")
EndClockTime = Annotated[
    str,
    Field(
        pattern=_END.pattern,
        examples=["17:00", "24:00"],
        description="`HH:MM`, 24-hour clock, or `24:00`: the midnight that ends the day. `00:00` means the same "
        "midnight and is answered as `24:00`.",
    ),
]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 is Monday, 6 is Sunday.")]


class Schedule(StrictModel):
    """When the campaign may send: on these weekdays, from ``start`` up to (not including) ``end``, local
    time. ``00:00``-``24:00`` sends around the clock on those days; an ``end`` before ``start`` is a
    window over midnight (``22:00``-``06:00``). ``start`` and ``end`` must differ. The weekday is that of
    the moment of sending (a ``22:00``-``06:00`` window on Fridays only sends Friday 00:00-06:00 and
    22:00-24:00)."""

    timezone: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            examples=["Europe/Berlin"],
            description="An IANA time zone name (`Europe/Berlin`, `UTC`) known to the server's time zone database.",
        ),
    ] = "UTC"
    days: Annotated[list[Weekday], Field(min_length=1, max_length=7, json_schema_extra=UNIQUE_ITEMS)] = [0, 1, 2, 3, 4]
    start: ClockTime = "09:00"
    end: EndClockTime = "17:00"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not an IANA time zone (e.g. `Europe/Berlin`, `UTC`)") from exc
        return value

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("days must not repeat")
        return sorted(value)

    @field_validator("end")
    @classmethod
    def _midnight_is_24(cls, value: str) -> str:
        return END_OF_DAY if value == "00:00" else value

    @model_validator(mode="after")
    def _window(self) -> Schedule:
        if self.start == self.end:
            raise ValueError(
                "start and end must differ (an empty window never sends); for a window around the clock "
                "use start 00:00 and end 24:00"
            )
        return self


class DelayRange(StrictModel):
    """A random pause of ``min``..``max`` seconds between two sends of the campaign."""

    min: Annotated[int, Field(ge=0, le=86_400)]
    max: Annotated[int, Field(ge=0, le=86_400, description="At least `min` (else a 422 naming this field).")]

    @model_validator(mode="after")
    def _ordered(self) -> DelayRange:
        if self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class StepIn(InputModel):
    """One email of the sequence. Bodies are kept as written (whitespace is not stripped)."""

    delay_seconds: Annotated[int, Field(ge=0, le=MAX_DELAY_SECONDS)] = Field(
        description="Wait after the previous step (after enrollment for step 1, which may be 0)."
    )
    subject: Annotated[str, Field(min_length=1, max_length=500, pattern=SINGLE_LINE_PATTERN), as_sent(500)] = Field(
        description="Template; must render to a single line. Ignored for threaded follow-ups (`Re:` step 1's). "
        "Templates must compile and render for a sample contact (known variables and filters only), "
        "else a 422 naming `steps.N.subject|text|html`."
    )
    text: Annotated[str, Field(min_length=1, max_length=100_000, pattern=NO_NUL_PATTERN)] = Field(
        description="Plain-text body template."
    )
    html: Annotated[str, Field(min_length=1, max_length=500_000, pattern=NO_NUL_PATTERN)] | None = Field(
        default=None, description="HTML body template (autoescaped), sent as an alternative to the text."
    )
    threaded: bool = Field(
        default=True,
        description="A follow-up in step 1's thread: same inbox, `Re:` subject, In-Reply-To/References.",
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return check_template("subject", value.strip())

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return check_template("text", value)

    @field_validator("html")
    @classmethod
    def _html(cls, value: str | None) -> str | None:
        return None if value is None else check_template("html", value)


Steps = Annotated[list[StepIn], Field(max_length=MAX_STEPS)]


class CampaignCreate(StrictModel):
    name: HeaderText
    type: CampaignType
    min_health_score: Annotated[float, Field(ge=0, le=100)] = Field(
        default=50.0,
        description="An inbox whose `overall_score` is below it does not send for the campaign. The default, 50, "
        "is the score of an inbox with no history yet (and the floor of stage 3): the stage gate is what keeps "
        "unwarmed inboxes out, this gate takes out inboxes whose record turned bad.",
    )
    bounce_rate_threshold: Annotated[float, Field(ge=0.5, le=25.0, description="Percent.")] = 8.0
    verify_email_mx: bool = Field(default=False, description="Check the recipient domain's MX before step 1.")
    stop_on_auto_reply: bool = Field(
        default=False, description="An auto-reply (out of office) ends the contact's sequence; by default it goes on."
    )
    schedule: Schedule = Field(default_factory=Schedule)
    randomize_delay_seconds: DelayRange | None = None
    steps: Steps = Field(
        default_factory=list, description="Up to 20; a campaign needs at least one to start. Order is send order."
    )


class CampaignUpdate(PatchModel):
    """Partial update; ``steps`` and ``schedule`` are replaced as a whole."""

    name: HeaderText | None = not_null()
    type: CampaignType | None = not_null()
    min_health_score: Annotated[float, Field(ge=0, le=100)] | None = not_null()
    bounce_rate_threshold: Annotated[float, Field(ge=0.5, le=25.0)] | None = not_null()
    verify_email_mx: bool | None = not_null()
    stop_on_auto_reply: bool | None = not_null()
    schedule: Schedule | None = not_null()
    randomize_delay_seconds: DelayRange | None = None
    steps: Steps | None = not_null()


# --- output -------------------------------------------------------------------------------------


class StepOut(BaseModel):
    position: int = Field(description="0 for step 1.")
    delay_seconds: int
    subject: str
    text: str
    html: str | None
    threaded: bool


class ThrottleReason(BaseModel):
    account_id: uuid.UUID
    reason: IneligibleReason


class Throttled(BaseModel):
    is_throttled: bool = Field(description="Active, and no inbox of the pool may send now.")
    reasons: list[ThrottleReason] = Field(description="Every inbox of the pool that may not send now, and why.")


class LastDeferral(BaseModel):
    """The latest dispatch that found no eligible inbox for some of the campaign's sends."""

    at: datetime
    deferred: int = Field(description="Sends that dispatch deferred.")
    retry_at: datetime = Field(
        description="When they are tried again: the earliest moment an inbox could take them (a spent "
        "budget at the next UTC midnight, a cooldown at its end; what waits on a person in 5 minutes)."
    )
    reasons: dict[str, str] = Field(
        description="Why each inbox of the pool could not take them, by account id: an ineligibility reason, "
        "or `interval` (min_send_interval_seconds not past) or `busy` (taken by a concurrent dispatcher)."
    )


class CampaignRead(BaseModel):
    id: uuid.UUID
    name: str
    type: CampaignType
    status: CampaignStatus
    paused_reason: str | None
    min_health_score: float
    bounce_rate_threshold: float = Field(
        description="Percent. An inbox whose permanent bounces in this campaign exceed it (after the minimum "
        "sample) leaves the campaign's rotation (README: the bounce guard)."
    )
    verify_email_mx: bool
    stop_on_auto_reply: bool
    schedule: Schedule
    randomize_delay_seconds: DelayRange | None
    steps: list[StepOut]
    pool_size: int = Field(description="Inboxes in the sending pool.")
    throttled: Throttled
    last_deferral: LastDeferral | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CampaignPage(BaseModel):
    data: list[CampaignRead]
    next_cursor: str | None


class PoolAttach(StrictModel):
    account_ids: Annotated[list[JsonUuid], Field(min_length=1, max_length=500)] = Field(
        description="Email account ids; one given twice is added once."
    )


class BounceGuardState(BaseModel):
    """The bounce guard's hold on this inbox in this campaign (``disabled_at`` null: none)."""

    disabled_at: datetime | None
    reason: str | None = Field(description="`bounce_rate` when disabled.")
    detail: dict[str, Any] | None = Field(
        description="The figures that disabled it: `bounce_rate` (percent), `bounces`, `sends`, `threshold`, "
        "`min_sample`, `counted_since`."
    )
    counts_since: datetime | None = Field(description="Its count restarted here (re-enabled); null: since it joined.")


class PoolAccountRead(BaseModel):
    account_id: uuid.UUID
    email: str
    is_active: bool
    overall_score: float
    current_stage: int
    daily_send_limit: int = Field(description="The configured ceiling.")
    effective_daily_send_limit: int = Field(description="The ceiling ramped by the warmup stage: what is used.")
    sends_today: int
    remaining_today: int
    eligible: bool
    reason: IneligibleReason | None = Field(description="Why the inbox may not send for this campaign now.")
    added_at: datetime
    bounce_guard: BounceGuardState | None = None


class PoolPage(BaseModel):
    data: list[PoolAccountRead]
    next_cursor: str | None


class MessageCounts(BaseModel):
    queued: int = 0
    leased: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    expired: int = 0
    unknown: int = 0
    bounced: int = Field(default=0, description="Sent, then failed permanently by a bounce report.")
    cancelled: int = Field(default=0, description="Not sent: the contact replied, complained or bounced first.")


class EnrollmentCounts(BaseModel):
    active: int = 0
    completed: int = 0
    replied: int = 0
    stopped: int = 0
    bounced: int = 0
    failed: int = 0


class InboxBudget(BaseModel):
    account_id: uuid.UUID
    email: str
    daily_send_limit: int = Field(description="The configured ceiling.")
    effective_daily_send_limit: int = Field(description="The ceiling ramped by the warmup stage: what is used.")
    sends_today: int
    remaining_today: int


class CampaignStats(BaseModel):
    campaign_id: uuid.UUID
    status: CampaignStatus
    messages: MessageCounts = Field(description="This campaign's messages by state.")
    enrollments: EnrollmentCounts
    sends_today: int = Field(description="Sends today (UTC) across the pool's inboxes, for any campaign.")
    campaign_sent_today: int = Field(description="This campaign's messages sent today (UTC).")
    inboxes: list[InboxBudget] = Field(description="Today's budget of each inbox of the pool.")
    throttled: Throttled
    last_deferral: LastDeferral | None
