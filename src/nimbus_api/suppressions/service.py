"""Suppression rules. An address is suppressed per workspace, case-insensitively; a suppressed address
is never sent to (the sender checks at dispatch and at send time), and suppressing it here also stops
the active enrollments of the workspace's contact with that address at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.events.catalogue import ContactSuppressedData
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import Contact, Enrollment, Suppression
from nimbus_api.suppressions.errors import SuppressionExists, SuppressionNotFound
from nimbus_api.suppressions.schemas import SuppressionRead


def to_read(row: Suppression) -> SuppressionRead:
    return SuppressionRead(
        id=row.id,
        email=row.email,
        reason=row.reason,
        detail=row.detail,
        created_at=row.created_at,
    )


async def reasons_for(session: AsyncSession, workspace_id: uuid.UUID, emails: Iterable[str]) -> dict[str, str]:
    """``{lower(email): reason}`` for the suppressed ones among ``emails`` (one query)."""
    lowered = sorted({e.lower() for e in emails})
    if not lowered:
        return {}
    rows = await session.execute(
        select(func.lower(Suppression.email), Suppression.reason).where(
            Suppression.workspace_id == workspace_id, func.lower(Suppression.email).in_(lowered)
        )
    )
    return dict(rows.all())


async def suppress(
    session: AsyncSession, workspace_id: uuid.UUID, email: str, reason: str, detail: str | None = None
) -> tuple[Suppression, bool]:
    """Suppress ``email`` (an existing suppression keeps its reason); returns it and whether it is new.
    Active enrollments of the contact with that address stop either way."""
    inserted = await session.scalar(
        insert(Suppression)
        .values(id=new_id(), workspace_id=workspace_id, email=email, reason=reason, detail=detail, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[Suppression.workspace_id, func.lower(Suppression.email)])
        .returning(Suppression.id)
    )
    row = await session.scalar(
        select(Suppression).where(
            Suppression.workspace_id == workspace_id, func.lower(Suppression.email) == email.lower()
        )
    )
    assert row is not None
    await stop_enrollments(session, workspace_id, email, stop_reason=reason)
    if inserted is not None:
        events.emit(
            session,
            workspace_id,
            "contact.suppressed",
            ContactSuppressedData(suppression_id=row.id, email=row.email, reason=row.reason),
        )
    return row, inserted is not None


async def stop_enrollments(session: AsyncSession, workspace_id: uuid.UUID, email: str, *, stop_reason: str) -> int:
    """Stop every active enrollment, in any campaign of the workspace, of the contact with this address."""
    contact_ids = select(Contact.id).where(
        Contact.workspace_id == workspace_id, func.lower(Contact.email) == email.lower()
    )
    result = await session.execute(
        update(Enrollment)
        .where(
            Enrollment.workspace_id == workspace_id,
            Enrollment.contact_id.in_(contact_ids.scalar_subquery()),
            Enrollment.status == "active",
        )
        .values(status="stopped", stop_reason=stop_reason, next_send_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def add_manual(session: AsyncSession, workspace_id: uuid.UUID, email: str, detail: str | None) -> Suppression:
    row, created = await suppress(session, workspace_id, email, "manual", detail)
    if not created:
        raise SuppressionExists(f"{email} is already suppressed ({row.reason})")
    return row


async def list_page(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    reason: str | None,
    email: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Suppression], str | None]:
    stmt = select(Suppression).where(Suppression.workspace_id == workspace_id)
    if reason:
        stmt = stmt.where(Suppression.reason == reason)
    if email:
        stmt = stmt.where(func.lower(Suppression.email) == email.lower())
    return page_of(list(await session.scalars(paginate(stmt, Suppression.id, cursor, limit))), limit)


async def remove(session: AsyncSession, workspace_id: uuid.UUID, suppression_id: uuid.UUID) -> None:
    """The address may be sent to again; enrollments stopped by the suppression stay stopped."""
    removed = await session.scalar(
        delete(Suppression)
        .where(Suppression.id == suppression_id, Suppression.workspace_id == workspace_id)
        .returning(Suppression.id)
    )
    if removed is None:
        raise SuppressionNotFound()
