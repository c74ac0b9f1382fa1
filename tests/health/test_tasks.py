"""The worker's health crons: scheduled from the settings, and left out where a worker must not run them."""

from __future__ import annotations

from nimbus_api.config import Settings
from nimbus_api.health.tasks import cron_times
from nimbus_api.worker.settings import FUNCTIONS, worker_kwargs


def test_cron_times_for_seconds_and_minutes() -> None:
    assert cron_times(10) == (None, {0, 10, 20, 30, 40, 50})
    assert cron_times(300) == ({0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55}, {0})
    assert cron_times(3600) == ({0}, {0})


def test_the_worker_schedules_both_health_crons_from_the_settings(settings: Settings) -> None:
    on = settings.model_copy(
        update={"deliverability_enabled": True, "health_recompute_seconds": 600, "health_request_seconds": 15}
    )
    crons = {c.name: c for c in worker_kwargs(on)["cron_jobs"]}
    full, requested = crons["cron:recompute_all"], crons["cron:recompute_requested"]
    assert (full.minute, full.second, full.run_at_startup) == ({0, 10, 20, 30, 40, 50}, {0}, True)
    assert (requested.minute, requested.second) == (None, {0, 15, 30, 45})
    assert full.unique and requested.unique  # one run per tick across worker processes
    names = {f.name for f in FUNCTIONS}
    assert {"recompute_all", "recompute_requested", "recompute_account"} <= names


DELIVERABILITY = {
    "cron:recompute_all",
    "cron:recompute_requested",
    "cron:apply_stages_tick",
    "cron:warmup_plan",
    "cron:warmup_send",
    "cron:warmup_receive",
    "cron:check_domains",
    "cron:evaluate_alerts",
    "cron:refresh_provider_quotas",
}


def test_a_worker_with_deliverability_off_schedules_none_of_its_crons(settings: Settings) -> None:
    on = {c.name for c in worker_kwargs(settings.model_copy(update={"deliverability_enabled": True}))["cron_jobs"]}
    assert on >= DELIVERABILITY
    off = {c.name for c in worker_kwargs(settings.model_copy(update={"deliverability_enabled": False}))["cron_jobs"]}
    assert not off & DELIVERABILITY
    assert {"cron:dispatch_tick", "cron:sweep_tick", "cron:rotate_data_keys"} <= off
