"""The retention purge: only events older than the setting go, and a second run finds nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api import events
from nimbus_api.config import Settings
from nimbus_api.events import tasks
from nimbus_api.events.catalogue import CampaignPausedData
from nimbus_api.kit.db import utcnow
from nimbus_api.models import Event
from tests.conftest import Tenant
from tests.events.conftest import events_of


async def test_events_past_the_retention_are_purged_idempotently(
    tenant: Tenant, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        rows = [
            events.emit(
                session,
                tenant.workspace_id,
                "campaign.paused",
                CampaignPausedData(campaign_id=uuid.uuid4(), name=f"c{i}", reason="manual"),
            )
            for i in range(5)
        ]
    ages = [31, 30.5, 29.9, 1, 0]  # days
    async with sessionmaker() as session, session.begin():
        for row, age in zip(rows, ages, strict=True):
            await session.execute(
                update(Event).where(Event.id == row.id).values(created_at=utcnow() - timedelta(days=age))
            )
    assert settings.event_retention_days == 30
    ctx = {"nimbus": SimpleNamespace(settings=settings, sessionmaker=sessionmaker)}
    tasks.PURGE_BATCH, batch = 1, tasks.PURGE_BATCH  # several batches
    try:
        assert await tasks.purge_events(ctx) >= 2
        assert await tasks.purge_events(ctx) == 0
    finally:
        tasks.PURGE_BATCH = batch
    kept = await events_of(sessionmaker, tenant.workspace_id)
    assert {e.id for e in kept} == {r.id for r in rows[2:]}
