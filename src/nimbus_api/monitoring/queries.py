"""The monitoring read's queries: the inbox with its domain and sync row (one join), the domain's latest
check per record, the active alerts on the inbox or its domain (the send figures are ``figures``)."""

from __future__ import annotations

import uuid

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.errors import AccountNotFound
from nimbus_api.models import AlertState, Domain, DomainCheck, EmailAccount, MailboxSync


async def load(
    session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[EmailAccount, Domain, MailboxSync | None]:
    row = (
        await session.execute(
            select(EmailAccount, Domain, MailboxSync)
            .join(Domain, Domain.id == EmailAccount.domain_id)
            .outerjoin(MailboxSync, MailboxSync.account_id == EmailAccount.id)
            .where(EmailAccount.id == account_id, EmailAccount.workspace_id == workspace_id)
        )
    ).first()
    if row is None:
        raise AccountNotFound()
    return row[0], row[1], row[2]


async def active_alerts(
    session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID, domain_id: uuid.UUID
) -> list[AlertState]:
    return list(
        await session.scalars(
            select(AlertState)
            .where(
                AlertState.workspace_id == workspace_id,
                AlertState.active,
                or_(AlertState.subject_id == account_id, AlertState.subject_id == domain_id),
            )
            .order_by(AlertState.id.desc())
        )
    )


async def domain_checks(session: AsyncSession, domain_id: uuid.UUID) -> list[DomainCheck]:
    return list(await session.scalars(select(DomainCheck).where(DomainCheck.domain_id == domain_id)))
