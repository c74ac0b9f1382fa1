"""``campaign.completed``: an active campaign whose enrollments all finished, with nothing left to send."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.campaigns.service import complete_finished
from nimbus_api.models import Campaign, Enrollment, Event, Message
from tests.sending.conftest import Campaigns


async def _complete(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as session, session.begin():
        return await complete_finished(session, datetime.now(UTC))


async def _status(sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID) -> str:
    async with sm() as session:
        return (await session.get_one(Campaign, campaign_id)).status


async def test_a_campaign_completes_once_every_enrollment_finished_and_nothing_is_left_to_send(
    campaigns: Campaigns, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], ["a@example.org", "b@example.org"])
    await campaigns.dispatch(campaign_id)  # two step-1 messages queued
    await _complete(sessionmaker)
    assert await _status(sessionmaker, campaign_id) == "active"

    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Enrollment).where(Enrollment.campaign_id == campaign_id).values(status="completed")
        )
    await _complete(sessionmaker)
    assert await _status(sessionmaker, campaign_id) == "active", "its queued messages are still to be sent"

    async with sessionmaker() as session, session.begin():
        await session.execute(update(Message).where(Message.campaign_id == campaign_id).values(state="sent"))
    await _complete(sessionmaker)
    await _complete(sessionmaker)  # idempotent: one event
    assert await _status(sessionmaker, campaign_id) == "completed"
    async with sessionmaker() as session:
        emitted = list(
            await session.scalars(
                select(Event).where(
                    Event.workspace_id == campaigns.tenant.workspace_id, Event.type == "campaign.completed"
                )
            )
        )
    assert [e.payload["data"] for e in emitted] == [{"campaign_id": str(campaign_id), "name": "launch"}]
    refused = await campaigns.tenant.client.post(
        f"/v1/campaigns/{campaign_id}/enrollments", json={"contact_ids": [str(uuid.uuid4())]}
    )
    assert refused.status_code == 409 and refused.json()["code"] == "campaign.completed"


async def test_an_active_enrollment_keeps_the_campaign_active(
    campaigns: Campaigns, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], ["c@example.org"])
    await _complete(sessionmaker)
    assert await _status(sessionmaker, campaign_id) == "active"
