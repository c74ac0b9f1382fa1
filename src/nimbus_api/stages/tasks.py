"""The periodic stage run: every inbox's stage and progress brought in line with the stage table.

Idempotent (a second run changes nothing). Inboxes are taken in batches by id, each batch one UPDATE in
its own short transaction, so a large deployment never holds many row locks at once."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import select

from nimbus_api.models import EmailAccount
from nimbus_api.stages.service import apply_stages
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)
BATCH = 2000


async def apply_stages_tick(ctx: dict[str, Any]) -> int:
    res = resources(ctx)
    changed = 0
    after: uuid.UUID | None = None
    while True:
        async with res.sessionmaker() as session, session.begin():
            stmt = select(EmailAccount.id).order_by(EmailAccount.id).limit(BATCH)
            if after is not None:
                stmt = stmt.where(EmailAccount.id > after)
            ids = list(await session.scalars(stmt))
            if not ids:
                break
            changed += len(await apply_stages(session, ids, settings=res.settings))
        after = ids[-1]
        if len(ids) < BATCH:
            break
    log.info("stages_applied", changed=changed)
    return changed
