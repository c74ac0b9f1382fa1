"""Campaign rules: create, read, update, delete, and the status transitions a person makes.

Status (``models.campaign``) changes here only through ``start`` and ``pause``, one function each:

    draft  --start--> active     needs >= 1 step (409 ``campaign.no_steps``) and >= 1 pool inbox
    paused --start--> active     (409 ``campaign.no_inboxes``); start of an active campaign changes nothing
    active --pause--> paused     pause of a paused campaign changes nothing; of a draft or completed one 409
    completed: never started again (409 ``campaign.completed``)

``completed`` (every enrollment finished) and automatic pauses (bounce rate) are the sending side's.
Steps are replaced as a whole; a follow-up step needs a delay of at least one second.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.campaigns import pool
from nimbus_api.campaigns.errors import (
    CampaignCompleted,
    CampaignHasNoInboxes,
    CampaignHasNoSteps,
    CampaignNotActive,
    CampaignNotFound,
)
from nimbus_api.campaigns.schemas import (
    END_OF_DAY,
    CampaignCreate,
    CampaignRead,
    CampaignUpdate,
    DelayRange,
    LastDeferral,
    Schedule,
    StepIn,
    StepOut,
)
from nimbus_api.events.catalogue import CampaignCompletedData, CampaignPausedData, CampaignStartedData
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.kit.problems import FieldError, ValidationProblem
from nimbus_api.models import Campaign, CampaignStep

_NOT_NULLABLE = {
    "name",
    "type",
    "min_health_score",
    "bounce_rate_threshold",
    "verify_email_mx",
    "stop_on_auto_reply",
    "schedule",
    "steps",
}


def _clock(value: str) -> time:
    """``HH:MM`` as a time of day; ``24:00`` (an ``end`` only) is stored as ``00:00``, the same midnight.

    So an all-day window is stored ``00:00``-``00:00``: start == end, which the dispatcher's window test
    (``sending.dispatcher.in_window``) reads as "always" (every moment is at or after ``start``)."""
    hours, minutes = value.split(":")
    return time(int(hours) % 24, int(minutes))


def _check_steps(steps: Sequence[StepIn]) -> None:
    errors = [
        FieldError(
            field=f"steps.{index}.delay_seconds",
            message="a follow-up step needs a delay of at least 1 second",
            type="value_error",
        )
        for index, step in enumerate(steps)
        if index and step.delay_seconds < 1
    ]
    if errors:
        raise ValidationProblem(errors)


def _apply_schedule(campaign: Campaign, schedule: Schedule) -> None:
    campaign.timezone = schedule.timezone
    campaign.send_days = list(schedule.days)
    campaign.send_start = _clock(schedule.start)
    campaign.send_end = _clock(schedule.end)


def _apply_delay(campaign: Campaign, delay: DelayRange | None) -> None:
    campaign.randomize_delay_min_seconds = delay.min if delay else None
    campaign.randomize_delay_max_seconds = delay.max if delay else None


def _step_rows(campaign_id: uuid.UUID, steps: Sequence[StepIn]) -> list[CampaignStep]:
    return [
        CampaignStep(
            campaign_id=campaign_id,
            position=position,
            delay_seconds=step.delay_seconds,
            subject_template=step.subject,
            text_template=step.text,
            html_template=step.html,
            threaded=step.threaded,
        )
        for position, step in enumerate(steps)
    ]


async def create(session: AsyncSession, workspace_id: uuid.UUID, payload: CampaignCreate) -> Campaign:
    _check_steps(payload.steps)
    campaign = Campaign(
        workspace_id=workspace_id,
        name=payload.name,
        type=payload.type,
        status="draft",
        min_health_score=payload.min_health_score,
        bounce_rate_threshold=payload.bounce_rate_threshold,
        verify_email_mx=payload.verify_email_mx,
        stop_on_auto_reply=payload.stop_on_auto_reply,
    )
    _apply_schedule(campaign, payload.schedule)
    _apply_delay(campaign, payload.randomize_delay_seconds)
    session.add(campaign)
    await session.flush()
    session.add_all(_step_rows(campaign.id, payload.steps))
    await session.flush()
    return campaign


async def get(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    campaign_id: uuid.UUID,
    *,
    for_update: bool = False,
    for_share: bool = False,
) -> Campaign:
    """``for_share``: hold the campaign's status while enrolling (``complete_finished`` skips it then)."""
    stmt = select(Campaign).where(Campaign.id == campaign_id, Campaign.workspace_id == workspace_id)
    if for_update:
        stmt = stmt.with_for_update()
    elif for_share:
        stmt = stmt.with_for_update(read=True)
    campaign = await session.scalar(stmt)
    if campaign is None:
        raise CampaignNotFound()
    return campaign


async def update(
    session: AsyncSession, workspace_id: uuid.UUID, campaign_id: uuid.UUID, patch: CampaignUpdate
) -> Campaign:
    campaign = await get(session, workspace_id, campaign_id, for_update=True)
    fields = patch.model_fields_set
    nulls = [name for name in fields & _NOT_NULLABLE if getattr(patch, name) is None]
    if nulls:
        raise ValidationProblem(
            [FieldError(field=name, message="may not be null", type="value_error") for name in sorted(nulls)]
        )
    for name in fields & {
        "name",
        "type",
        "min_health_score",
        "bounce_rate_threshold",
        "verify_email_mx",
        "stop_on_auto_reply",
    }:
        setattr(campaign, name, getattr(patch, name))
    if patch.schedule is not None:
        _apply_schedule(campaign, patch.schedule)
    if "randomize_delay_seconds" in fields:
        _apply_delay(campaign, patch.randomize_delay_seconds)
    if patch.steps is not None:
        _check_steps(patch.steps)
        if not patch.steps and campaign.status == "active":
            raise ValidationProblem(
                [FieldError(field="steps", message="an active campaign needs at least one step", type="value_error")]
            )
        await session.execute(delete(CampaignStep).where(CampaignStep.campaign_id == campaign.id))
        await session.flush()
        session.add_all(_step_rows(campaign.id, patch.steps))
    campaign.updated_at = utcnow()
    await session.flush()
    return campaign


async def delete_campaign(session: AsyncSession, workspace_id: uuid.UUID, campaign_id: uuid.UUID) -> None:
    campaign = await get(session, workspace_id, campaign_id)
    await session.delete(campaign)
    await session.flush()


# --- status transitions --------------------------------------------------------------------------


async def start(session: AsyncSession, workspace_id: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
    campaign = await get(session, workspace_id, campaign_id, for_update=True)
    if campaign.status == "completed":
        raise CampaignCompleted("a completed campaign cannot be started again; create a new one")
    if campaign.status == "active":
        return campaign
    steps = await session.scalar(
        select(func.count()).select_from(CampaignStep).where(CampaignStep.campaign_id == campaign.id)
    )
    if not steps:
        raise CampaignHasNoSteps()
    if not await pool.pool_size(session, campaign.id):
        raise CampaignHasNoInboxes()
    now = utcnow()
    resumed = campaign.status == "paused"
    campaign.status = "active"
    campaign.paused_reason = None
    campaign.started_at = campaign.started_at or now
    campaign.updated_at = now
    events.emit(
        session,
        workspace_id,
        "campaign.started",
        CampaignStartedData(campaign_id=campaign.id, name=campaign.name, resumed=resumed),
    )
    await session.flush()
    return campaign


async def pause(session: AsyncSession, workspace_id: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
    campaign = await get(session, workspace_id, campaign_id, for_update=True)
    if campaign.status == "paused":
        return campaign
    if campaign.status != "active":
        raise CampaignNotActive(f"the campaign is {campaign.status}; only an active campaign can be paused")
    campaign.status = "paused"
    campaign.paused_reason = None
    campaign.updated_at = utcnow()
    events.emit(
        session,
        workspace_id,
        "campaign.paused",
        CampaignPausedData(campaign_id=campaign.id, name=campaign.name, reason="manual"),
    )
    await session.flush()
    return campaign


# --- reads -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignFilters:
    status: str | None = None
    type: str | None = None


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, filters: CampaignFilters, cursor: str | None, limit: int
) -> tuple[list[Campaign], str | None]:
    stmt = select(Campaign).where(Campaign.workspace_id == workspace_id)
    if filters.status:
        stmt = stmt.where(Campaign.status == filters.status)
    if filters.type:
        stmt = stmt.where(Campaign.type == filters.type)
    return page_of(list(await session.scalars(paginate(stmt, Campaign.id, cursor, limit))), limit)


def schedule_of(campaign: Campaign) -> Schedule:
    return Schedule.model_construct(
        timezone=campaign.timezone,
        days=sorted(campaign.send_days),
        start=campaign.send_start.strftime("%H:%M"),
        end=END_OF_DAY if campaign.send_end == time(0) else campaign.send_end.strftime("%H:%M"),
    )


async def to_read(
    session: AsyncSession, campaigns: Sequence[Campaign], now: datetime | None = None
) -> list[CampaignRead]:
    """Output models with steps, pool size and ``throttled`` (three queries for any number of campaigns)."""
    now = now or utcnow()
    ids = [c.id for c in campaigns]
    steps: dict[uuid.UUID, list[CampaignStep]] = defaultdict(list)
    if ids:
        for step in await session.scalars(
            select(CampaignStep).where(CampaignStep.campaign_id.in_(ids)).order_by(CampaignStep.position)
        ):
            steps[step.campaign_id].append(step)
    pools = await pool.load_pools(session, ids, now)
    out = []
    for c in campaigns:
        delay = (
            DelayRange.model_construct(min=c.randomize_delay_min_seconds, max=c.randomize_delay_max_seconds)
            if c.randomize_delay_min_seconds is not None and c.randomize_delay_max_seconds is not None
            else None
        )
        out.append(
            CampaignRead(
                id=c.id,
                name=c.name,
                type=c.type,
                status=c.status,
                paused_reason=c.paused_reason,
                min_health_score=c.min_health_score,
                bounce_rate_threshold=c.bounce_rate_threshold,
                verify_email_mx=c.verify_email_mx,
                stop_on_auto_reply=c.stop_on_auto_reply,
                schedule=schedule_of(c),
                randomize_delay_seconds=delay,
                steps=[
                    StepOut(
                        position=s.position,
                        delay_seconds=s.delay_seconds,
                        subject=s.subject_template,
                        text=s.text_template,
                        html=s.html_template,
                        threaded=s.threaded,
                    )
                    for s in steps[c.id]
                ],
                pool_size=len(pools[c.id]),
                throttled=pool.throttled(c, pools[c.id], now),
                last_deferral=LastDeferral.model_validate(c.last_deferral) if c.last_deferral else None,
                started_at=c.started_at,
                completed_at=c.completed_at,
                created_at=c.created_at,
                updated_at=c.updated_at,
            )
        )
    return out


# A campaign is finished when it is active, has enrollments, none of them still active, and no message of
# it is still to be sent. (Written out twice: the second statement checks again under the locks.)
_FINISHED_CANDIDATES = text(
    """
    SELECT c.id FROM campaigns c
    WHERE c.status = 'active'
      AND EXISTS (SELECT 1 FROM enrollments e WHERE e.campaign_id = c.id)
      AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.campaign_id = c.id AND e.status = 'active')
      AND NOT EXISTS (
          SELECT 1 FROM messages m WHERE m.campaign_id = c.id AND m.state IN ('queued', 'deferred', 'leased')
      )
    LIMIT 500
    FOR UPDATE SKIP LOCKED
    """
)
_COMPLETE = text(
    """
    UPDATE campaigns c SET status = 'completed', completed_at = :now, updated_at = :now
    WHERE c.id = ANY(:ids) AND c.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.campaign_id = c.id AND e.status = 'active')
      AND NOT EXISTS (
          SELECT 1 FROM messages m WHERE m.campaign_id = c.id AND m.state IN ('queued', 'deferred', 'leased')
      )
    RETURNING c.id, c.workspace_id, c.name
    """
)


async def complete_finished(session: AsyncSession, now: datetime) -> int:
    """``active -> completed`` for every campaign whose enrollments have all finished and that has
    nothing left to send; emits ``campaign.completed`` for each, in the same transaction.

    The candidates are locked first (``SKIP LOCKED``: a campaign an enrollment is being added to, which
    holds it ``FOR SHARE``, waits for the next sweep), then checked again by a statement that sees
    everything committed before the locks were taken."""
    ids = list(await session.scalars(_FINISHED_CANDIDATES))
    if not ids:
        return 0
    rows = (await session.execute(_COMPLETE, {"ids": ids, "now": now})).all()
    for row in rows:
        events.emit(
            session, row.workspace_id, "campaign.completed", CampaignCompletedData(campaign_id=row.id, name=row.name)
        )
    return len(rows)
