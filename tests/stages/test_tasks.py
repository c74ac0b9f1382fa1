"""The periodic stage task: every inbox, in batches, each batch its own transaction; idempotent."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.stages import tasks
from nimbus_api.stages.tasks import apply_stages_tick
from tests.stages.conftest import Inboxes


class _Resources:
    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker


async def test_the_tick_moves_every_inbox_in_batches(
    inboxes: Inboxes,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    monkeypatch: Any,
) -> None:
    ids = [await inboxes.add(warmup_sent_total=200 + i, overall_score=55.0) for i in range(5)]
    monkeypatch.setattr(tasks, "BATCH", 2)  # several batches even on a small database
    ctx: dict[str, Any] = {"nimbus": _Resources(settings, sessionmaker)}
    assert await apply_stages_tick(ctx) >= 5
    assert {(await inboxes.get(i)).current_stage for i in ids} == {3}
    assert await apply_stages_tick(ctx) == 0
