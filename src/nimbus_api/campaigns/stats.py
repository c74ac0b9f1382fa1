"""Campaign statistics: messages by state, enrollments by status, today's budget of the pool."""

from __future__ import annotations

from datetime import UTC, datetime, time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.campaigns import pool
from nimbus_api.campaigns.schemas import (
    CampaignStats,
    EnrollmentCounts,
    InboxBudget,
    LastDeferral,
    MessageCounts,
)
from nimbus_api.models import Campaign, Enrollment, Message
from nimbus_api.stages.limits import effective_limit


async def campaign_stats(session: AsyncSession, campaign: Campaign, now: datetime) -> CampaignStats:
    by_state = dict(
        (
            await session.execute(
                select(Message.state, func.count()).where(Message.campaign_id == campaign.id).group_by(Message.state)
            )
        ).all()
    )
    by_status = dict(
        (
            await session.execute(
                select(Enrollment.status, func.count())
                .where(Enrollment.campaign_id == campaign.id)
                .group_by(Enrollment.status)
            )
        ).all()
    )
    midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    sent_today = await session.scalar(
        select(func.count()).where(
            Message.campaign_id == campaign.id, Message.state == "sent", Message.sent_at >= midnight
        )
    )
    inboxes = (await pool.load_pools(session, [campaign.id], now))[campaign.id]
    return CampaignStats(
        campaign_id=campaign.id,
        status=campaign.status,
        messages=MessageCounts(**{k: v for k, v in by_state.items() if k in MessageCounts.model_fields}),
        enrollments=EnrollmentCounts(**{k: v for k, v in by_status.items() if k in EnrollmentCounts.model_fields}),
        sends_today=sum(inbox.sends_today for inbox in inboxes),
        campaign_sent_today=sent_today or 0,
        inboxes=[
            InboxBudget(
                account_id=inbox.account.id,
                email=inbox.account.email,
                daily_send_limit=inbox.account.daily_send_limit,
                effective_daily_send_limit=effective_limit(inbox.account),
                sends_today=inbox.sends_today,
                remaining_today=inbox.remaining_today,
            )
            for inbox in inboxes
        ],
        throttled=pool.throttled(campaign, inboxes, now),
        last_deferral=LastDeferral.model_validate(campaign.last_deferral) if campaign.last_deferral else None,
    )
