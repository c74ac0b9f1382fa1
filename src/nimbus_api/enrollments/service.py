"""Enrolling contacts into a campaign, stopping an enrollment, and the one-click unsubscribe.

Enrolling is set-based: the requested ids are checked against the workspace's contacts and the
suppression list in two queries, then one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING``
creates the enrollments (status ``active``, ``next_step`` 0, due now, a random unsubscribe token).
Nothing is dropped silently: unknown or foreign ids come back in ``not_found``, suppressed contacts in
``suppressed``, contacts enrolled before count in ``already_enrolled``.

Unsubscribe (``POST /u/{token}``): the token names one enrollment; the contact's address goes on the
workspace's suppression list (``unsubscribed``; an existing suppression keeps its reason) and every
active enrollment of that contact, in every campaign of the workspace, stops. Doing it again changes
nothing. A token reaches nothing outside its own workspace.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.campaigns.errors import CampaignCompleted
from nimbus_api.enrollments.errors import EnrollmentNotFound, UnsubscribeTokenNotFound
from nimbus_api.enrollments.schemas import EnrollmentRead, EnrollReport, EnrollSuppressed
from nimbus_api.events.catalogue import EnrollmentUnsubscribedData
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.pagination import decode_cursor, encode_cursor
from nimbus_api.models import Campaign, Contact, Enrollment
from nimbus_api.suppressions import service as suppressions

UNSUBSCRIBE_TOKEN_BYTES = 24

ENROLL = text(
    """
INSERT INTO enrollments AS e (id, workspace_id, campaign_id, contact_id, status, next_step, next_send_at,
                              unsubscribe_token, created_at, updated_at)
SELECT t.id, CAST(:workspace_id AS uuid), CAST(:campaign_id AS uuid), t.contact_id, 'active', 0,
       CAST(:now AS timestamptz), t.token, CAST(:now AS timestamptz), CAST(:now AS timestamptz)
FROM unnest(CAST(:ids AS uuid[]), CAST(:contact_ids AS uuid[]), CAST(:tokens AS text[])) AS t(id, contact_id, token)
ORDER BY t.contact_id
ON CONFLICT (campaign_id, contact_id) DO NOTHING
RETURNING e.contact_id
"""
)


def new_unsubscribe_token() -> str:
    return secrets.token_urlsafe(UNSUBSCRIBE_TOKEN_BYTES)


async def enroll(
    session: AsyncSession, workspace_id: uuid.UUID, campaign: Campaign, contact_ids: Sequence[uuid.UUID]
) -> EnrollReport:
    if campaign.status == "completed":
        raise CampaignCompleted("a completed campaign takes no new contacts; create a new one")
    wanted = list(dict.fromkeys(contact_ids))
    found = dict(
        (
            await session.execute(
                select(Contact.id, Contact.email).where(Contact.workspace_id == workspace_id, Contact.id.in_(wanted))
            )
        ).all()
    )
    suppressed_reasons = await suppressions.reasons_for(session, workspace_id, found.values())
    suppressed = [
        EnrollSuppressed(contact_id=cid, email=email, reason=suppressed_reasons[email.lower()])
        for cid, email in found.items()
        if email.lower() in suppressed_reasons
    ]
    skip = {s.contact_id for s in suppressed}
    candidates = sorted(cid for cid in found if cid not in skip)
    enrolled: list[uuid.UUID] = []
    if candidates:
        now = utcnow()
        enrolled = list(
            await session.scalars(
                ENROLL,
                {
                    "workspace_id": workspace_id,
                    "campaign_id": campaign.id,
                    "now": now,
                    "ids": [new_id() for _ in candidates],
                    "contact_ids": candidates,
                    "tokens": [new_unsubscribe_token() for _ in candidates],
                },
            )
        )
    return EnrollReport(
        enrolled=len(enrolled),
        already_enrolled=len(candidates) - len(enrolled),
        not_found=[cid for cid in wanted if cid not in found],
        suppressed=sorted(suppressed, key=lambda s: s.contact_id),
    )


def to_read(enrollment: Enrollment, email: str) -> EnrollmentRead:
    return EnrollmentRead(
        id=enrollment.id,
        campaign_id=enrollment.campaign_id,
        contact_id=enrollment.contact_id,
        email=email,
        status=enrollment.status,
        next_step=enrollment.next_step,
        next_send_at=enrollment.next_send_at,
        account_id=enrollment.account_id,
        stop_reason=enrollment.stop_reason,
        replied_at=enrollment.replied_at,
        auto_replied_at=enrollment.auto_replied_at,
        created_at=enrollment.created_at,
        updated_at=enrollment.updated_at,
    )


async def list_page(
    session: AsyncSession, campaign: Campaign, *, status: str | None, cursor: str | None, limit: int
) -> tuple[list[EnrollmentRead], str | None]:
    stmt = (
        select(Enrollment, Contact.email)
        .join(Contact, Contact.id == Enrollment.contact_id)
        .where(Enrollment.campaign_id == campaign.id)
    )
    if status:
        stmt = stmt.where(Enrollment.status == status)
    if cursor:
        stmt = stmt.where(Enrollment.id < decode_cursor(cursor))
    rows = (await session.execute(stmt.order_by(Enrollment.id.desc()).limit(limit + 1))).all()
    items = [to_read(enrollment, email) for enrollment, email in rows[:limit]]
    return items, (encode_cursor(items[-1].id) if len(rows) > limit and items else None)


async def stop(session: AsyncSession, campaign: Campaign, enrollment_id: uuid.UUID) -> EnrollmentRead:
    """An active enrollment stops (``stopped by a person``); any other status stays as it is."""
    row = (
        await session.execute(
            select(Enrollment, Contact.email)
            .join(Contact, Contact.id == Enrollment.contact_id)
            .where(Enrollment.id == enrollment_id, Enrollment.campaign_id == campaign.id)
            .with_for_update(of=Enrollment)
        )
    ).first()
    if row is None:
        raise EnrollmentNotFound()
    enrollment, email = row
    if enrollment.status == "active":
        enrollment.status = "stopped"
        enrollment.stop_reason = "stopped by a person"
        enrollment.next_send_at = None
        enrollment.updated_at = utcnow()
        await session.flush()
    return to_read(enrollment, email)


async def unsubscribe(session: AsyncSession, token: str) -> None:
    row = (
        await session.execute(
            select(Enrollment.id, Enrollment.workspace_id, Enrollment.campaign_id, Contact.id, Contact.email)
            .join(Contact, Contact.id == Enrollment.contact_id)
            .where(Enrollment.unsubscribe_token == token)
        )
    ).first()
    if row is None:
        raise UnsubscribeTokenNotFound()
    enrollment_id, workspace_id, campaign_id, contact_id, email = row
    _, created = await suppressions.suppress(
        session, workspace_id, email, "unsubscribed", detail=f"one-click unsubscribe (campaign {campaign_id})"
    )
    if created:  # a repeated click (or an address already suppressed) changes nothing, and says nothing
        events.emit(
            session,
            workspace_id,
            "enrollment.unsubscribed",
            EnrollmentUnsubscribedData(
                enrollment_id=enrollment_id, campaign_id=campaign_id, contact_id=contact_id, email=email
            ),
        )


async def token_known(session: AsyncSession, token: str) -> bool:
    return await session.scalar(select(Enrollment.id).where(Enrollment.unsubscribe_token == token)) is not None
