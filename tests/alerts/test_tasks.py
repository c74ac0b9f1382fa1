"""The worker's evaluation job: scheduled every minute by default (a setting), and a run as arq runs it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.alerts.tasks import evaluate_alerts
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.net import build_net_context
from nimbus_api.sending.mx import MxChecker
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.worker.context import WorkerResources
from nimbus_api.worker.settings import FUNCTIONS, worker_kwargs
from tests.alerts.conftest import World
from tests.conftest import Tenant


def test_the_evaluation_is_scheduled_at_the_configured_interval(settings: Settings) -> None:
    on = settings.model_copy(update={"deliverability_enabled": True})
    [job] = [c for c in worker_kwargs(on)["cron_jobs"] if c.name == "cron:evaluate_alerts"]
    assert (job.minute, job.second, job.unique) == (set(range(60)), {15}, True)
    every_five = on.model_copy(update={"alert_evaluation_minutes": 5})
    [job] = [c for c in worker_kwargs(every_five)["cron_jobs"] if c.name == "cron:evaluate_alerts"]
    assert job.minute == {0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55}
    assert "evaluate_alerts" in {f.name for f in FUNCTIONS}  # enqueued by name after a change, too


async def test_the_job_evaluates_and_a_second_run_changes_nothing(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    tenant: Tenant,
    world: World,
) -> None:
    await world.inbox(tenant.workspace_id, overall_score=8.0, complaint_rate_7d=2.0)
    net = build_net_context(settings)
    async with SmtpPool(net) as pool:
        ctx: dict[str, Any] = {
            "nimbus": WorkerResources(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker,
                vault=vault,
                pool=pool,
                pacer=None,
                mx=MxChecker(net.resolver),
                worker_id="test-worker",
            )
        }
        assert await evaluate_alerts(ctx, str(tenant.workspace_id)) == (2, 0)
        assert await evaluate_alerts(ctx, str(tenant.workspace_id)) == (0, 0)
    kinds = sorted(e.payload["data"]["kind"] for e in await world.events(tenant.workspace_id, "alert.triggered"))
    assert kinds == ["complaint_rate_above", "score_below"]
