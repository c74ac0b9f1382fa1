from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.audit.schemas import AuditEntry
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import CredentialAccess


@dataclass(frozen=True)
class AuditFilters:
    account_id: uuid.UUID | None = None
    purpose: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, filters: AuditFilters, cursor: str | None, limit: int
) -> tuple[list[AuditEntry], str | None]:
    stmt = select(CredentialAccess).where(CredentialAccess.workspace_id == workspace_id)
    if filters.account_id:
        stmt = stmt.where(CredentialAccess.account_id == filters.account_id)
    if filters.purpose:
        stmt = stmt.where(CredentialAccess.purpose == filters.purpose)
    if filters.since:
        stmt = stmt.where(CredentialAccess.created_at >= filters.since)
    if filters.until:
        stmt = stmt.where(CredentialAccess.created_at < filters.until)
    rows, next_cursor = page_of(list(await session.scalars(paginate(stmt, CredentialAccess.id, cursor, limit))), limit)
    return [
        AuditEntry(
            id=r.id,
            account_id=r.account_id,
            webhook_endpoint_id=r.webhook_endpoint_id,
            credential=r.credential_kind,
            actor=r.actor,
            purpose=r.purpose,
            created_at=r.created_at,
        )
        for r in rows
    ], next_cursor
