"""The alert evaluation job: every workspace from the cron, or one workspace when enqueued by name
(``evaluate_alerts``, with its id) after a change that moves a condition. Idempotent: a second run finds
the states already moved and emits nothing."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from nimbus_api.alerts.evaluate import evaluate
from nimbus_api.worker.context import task_session

log = structlog.get_logger(__name__)


async def evaluate_alerts(ctx: dict[str, Any], workspace_id: str | None = None) -> tuple[int, int]:
    """Returns how many alerts were triggered and resolved."""
    async with task_session(ctx) as session:
        outcome = await evaluate(session, workspace_id=uuid.UUID(workspace_id) if workspace_id else None)
    triggered, resolved = outcome.counts
    if triggered or resolved:
        log.info("alerts_evaluated", triggered=triggered, resolved=resolved, workspace_id=workspace_id)
    return triggered, resolved
