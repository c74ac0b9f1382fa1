"""arq jobs of the vault. ``rotate_data_keys`` (cron, hourly): the scheduled data-key rotation
(``credentials.schedule``); idempotent, and safe with any number of workers running it at once."""

from __future__ import annotations

from typing import Any

import structlog

from nimbus_api.credentials.schedule import rotate_due_data_keys
from nimbus_api.kit.db import utcnow
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)

ROTATION_JOB_TIMEOUT = 50 * 60
"""arq's timeout for one run: a run cut short leaves the workspace due, and the next run resumes it."""


async def rotate_data_keys(ctx: dict[str, Any]) -> int:
    """Rotate every workspace's data key older than ``NIMBUS_DATA_KEY_MAX_AGE_DAYS``; returns how many."""
    res = resources(ctx)
    run = await rotate_due_data_keys(
        res.engine, res.sessionmaker, res.vault, max_age_days=res.settings.data_key_max_age_days, now=utcnow()
    )
    if run.rotated or run.failed or run.skipped_busy:
        log.info(
            "data_key_rotation_run",
            rotated=len(run.rotated),
            failed=len(run.failed),
            busy=len(run.skipped_busy),
        )
    return len(run.rotated)
