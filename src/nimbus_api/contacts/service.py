"""Contact rules: one contact per address per workspace (case-insensitive), custom fields merged on
update, ``suppressed`` read from the suppression list."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.contacts.errors import ContactExists, ContactNotFound
from nimbus_api.contacts.schemas import MAX_FIELDS, ContactCreate, ContactRead, ContactUpdate
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.kit.problems import FieldError, ValidationProblem
from nimbus_api.models import Contact
from nimbus_api.suppressions import service as suppressions


async def _ensure_unique(
    session: AsyncSession, workspace_id: uuid.UUID, email: str, exclude: uuid.UUID | None = None
) -> None:
    stmt = select(Contact.id).where(Contact.workspace_id == workspace_id, func.lower(Contact.email) == email.lower())
    if exclude is not None:
        stmt = stmt.where(Contact.id != exclude)
    if await session.scalar(stmt) is not None:
        raise ContactExists(f"{email} is already a contact in this workspace")


async def _flush(session: AsyncSession, email: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create of the same address won the race
        raise ContactExists(f"{email} is already a contact in this workspace") from exc


async def create(session: AsyncSession, workspace_id: uuid.UUID, payload: ContactCreate) -> Contact:
    await _ensure_unique(session, workspace_id, payload.email)
    contact = Contact(workspace_id=workspace_id, **payload.model_dump())
    session.add(contact)
    await _flush(session, payload.email)
    return contact


async def get(session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    contact = await session.scalar(
        select(Contact).where(Contact.id == contact_id, Contact.workspace_id == workspace_id)
    )
    if contact is None:
        raise ContactNotFound()
    return contact


async def update(
    session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID, patch: ContactUpdate
) -> Contact:
    contact = await get(session, workspace_id, contact_id)
    given = patch.model_fields_set
    if "email" in given:
        if patch.email is None:
            raise ValidationProblem([FieldError(field="email", message="may not be null", type="value_error")])
        if patch.email.lower() != contact.email.lower():
            await _ensure_unique(session, workspace_id, patch.email, exclude=contact.id)
        contact.email = patch.email
    for name in given & {"first_name", "last_name", "company"}:
        setattr(contact, name, getattr(patch, name))
    if "fields" in given:
        merged = dict(contact.fields)
        for key, value in (patch.fields or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if len(merged) > MAX_FIELDS:
            raise ValidationProblem(
                [FieldError(field="fields", message=f"at most {MAX_FIELDS} custom fields", type="value_error")]
            )
        contact.fields = merged
    contact.updated_at = utcnow()
    await _flush(session, contact.email)
    return contact


async def delete_contact(session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID) -> None:
    contact = await get(session, workspace_id, contact_id)
    await session.delete(contact)
    await session.flush()


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, email: str | None, cursor: str | None, limit: int
) -> tuple[list[Contact], str | None]:
    stmt = select(Contact).where(Contact.workspace_id == workspace_id)
    if email:
        stmt = stmt.where(func.lower(Contact.email) == email.lower())
    return page_of(list(await session.scalars(paginate(stmt, Contact.id, cursor, limit))), limit)


async def to_read(session: AsyncSession, workspace_id: uuid.UUID, contacts: Sequence[Contact]) -> list[ContactRead]:
    suppressed = await suppressions.reasons_for(session, workspace_id, [c.email for c in contacts])
    return [
        ContactRead(
            id=c.id,
            email=c.email,
            first_name=c.first_name,
            last_name=c.last_name,
            company=c.company,
            fields=c.fields,
            suppressed=c.email.lower() in suppressed,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in contacts
    ]
