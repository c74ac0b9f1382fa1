"""Reading alerts back: a workspace's alerts, active or past, newest first."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.alerts.kinds import KINDS, describe
from nimbus_api.alerts.schemas import AlertRead
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import AlertState


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    active: bool | None,
    subject_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AlertState], str | None]:
    stmt = select(AlertState).where(AlertState.workspace_id == workspace_id)
    if active is not None:
        stmt = stmt.where(AlertState.active.is_(active))
    if subject_id is not None:
        stmt = stmt.where(AlertState.subject_id == subject_id)
    return page_of(list(await session.scalars(paginate(stmt, AlertState.id, cursor, limit))), limit)


def reads(rows: Sequence[AlertState]) -> list[AlertRead]:
    return [
        AlertRead(
            id=r.id,
            rule_id=r.rule_id,
            kind=KINDS[r.kind].name,
            severity=r.severity,
            subject_type=KINDS[r.kind].subject,
            subject_id=r.subject_id,
            subject_name=r.subject_name,
            threshold=r.threshold,
            value=r.value,
            last_value=r.last_value,
            active=r.active,
            since=r.since,
            resolved_at=r.resolved_at,
            resolved_reason=r.resolved_reason,
            message=describe(r.kind, r.subject_name, r.last_value, r.threshold),
        )
        for r in rows
    ]
