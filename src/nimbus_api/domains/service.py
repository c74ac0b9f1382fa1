from __future__ import annotations

import uuid

from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.domains.errors import DomainNotFound
from nimbus_api.domains.health import RECORDS
from nimbus_api.domains.schemas import DomainCheckRead, DomainHealthRead, DomainRead, DomainSampleRead
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import Domain, DomainCheck, DomainSample, EmailAccount


async def get_or_create(session: AsyncSession, workspace_id: uuid.UUID, name: str) -> Domain:
    """The workspace's record for ``name``, created on first use (safe under concurrent creates)."""
    await session.execute(
        insert(Domain)
        .values(id=new_id(), workspace_id=workspace_id, name=name)
        .on_conflict_do_nothing(index_elements=["workspace_id", "name"])
    )
    domain = await session.scalar(select(Domain).where(Domain.workspace_id == workspace_id, Domain.name == name))
    assert domain is not None
    return domain


def _read(domain: Domain, count: int) -> DomainRead:
    return DomainRead(
        id=domain.id,
        name=domain.name,
        is_paused=domain.is_paused,
        paused_reason=domain.paused_reason,
        dns_status=domain.dns_status,
        blocklist_status=domain.blocklist_status,
        health_checked_at=domain.health_checked_at,
        account_count=count,
        created_at=domain.created_at,
        updated_at=domain.updated_at,
    )


def _with_counts(workspace_id: uuid.UUID) -> Select[Domain, int]:
    count = (
        select(func.count(EmailAccount.id))
        .where(EmailAccount.domain_id == Domain.id)
        .correlate(Domain)
        .scalar_subquery()
    )
    return select(Domain, count).where(Domain.workspace_id == workspace_id)


async def get(session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID) -> DomainRead:
    row = (await session.execute(_with_counts(workspace_id).where(Domain.id == domain_id))).first()
    if row is None:
        raise DomainNotFound()
    return _read(row[0], row[1])


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, name: str | None, cursor: str | None, limit: int
) -> tuple[list[DomainRead], str | None]:
    stmt = _with_counts(workspace_id)
    if name:
        stmt = stmt.where(Domain.name == name.lower())
    rows = (await session.execute(paginate(stmt, Domain.id, cursor, limit))).all()
    items, next_cursor = page_of([row[0] for row in rows], limit)
    counts = {row[0].id: row[1] for row in rows}
    return [_read(d, counts[d.id]) for d in items], next_cursor


async def get_health(session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID) -> DomainHealthRead:
    """The domain with the latest result of each check and the captured message's headers."""
    base = await get(session, workspace_id, domain_id)
    rows = (await session.scalars(select(DomainCheck).where(DomainCheck.domain_id == domain_id))).all()
    order = {name: i for i, name in enumerate(RECORDS)}
    checks = [
        DomainCheckRead.model_validate(row, from_attributes=True)
        for row in sorted(rows, key=lambda r: order.get(r.record, len(order)))
    ]
    sample = await session.get(DomainSample, domain_id)
    sample_read = (
        DomainSampleRead(
            source=sample.source,
            account_id=sample.account_id,
            captured_at=sample.captured_at,
            headers=sample.headers,
        )
        if sample is not None
        else None
    )
    return DomainHealthRead(**base.model_dump(), checks=checks, sample=sample_read)
