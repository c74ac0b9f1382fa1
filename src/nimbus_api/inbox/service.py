"""Reading the unified inbox: a workspace's inbound messages across its inboxes, newest first."""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify.parsing import decode_header_value
from nimbus_api.inbox.errors import InboxMessageNotFound
from nimbus_api.inbox.schemas import (
    Classification,
    Header,
    InboundRecipient,
    InboxItem,
    InboxMatch,
    InboxMessageRead,
    InboxUpdate,
    OutboundReplyRead,
)
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import InboundMessage, OutboundReply

SNIPPET = 200
MAX_HEADERS = 200


@dataclass(frozen=True)
class InboxFilters:
    account_id: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = None
    kind: str | None = None
    unread: bool | None = None
    archived: bool = False
    since: datetime | None = None


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, filters: InboxFilters, cursor: str | None, limit: int
) -> tuple[list[InboundMessage], str | None]:
    stmt = select(InboundMessage).where(InboundMessage.workspace_id == workspace_id)
    if filters.account_id is not None:
        stmt = stmt.where(InboundMessage.account_id == filters.account_id)
    if filters.campaign_id is not None:
        stmt = stmt.where(InboundMessage.campaign_id == filters.campaign_id)
    if filters.kind is not None:
        stmt = stmt.where(InboundMessage.kind == filters.kind)
    if filters.unread is not None:
        stmt = stmt.where(InboundMessage.read_at.is_(None) if filters.unread else InboundMessage.read_at.is_not(None))
    stmt = stmt.where(
        InboundMessage.archived_at.is_not(None) if filters.archived else InboundMessage.archived_at.is_(None)
    )
    if filters.since is not None:
        stmt = stmt.where(InboundMessage.created_at >= filters.since)
    rows = (await session.scalars(paginate(stmt, InboundMessage.id, cursor, limit))).all()
    return page_of(rows, limit)


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID, *, for_update: bool = False
) -> InboundMessage:
    stmt = select(InboundMessage).where(InboundMessage.id == message_id, InboundMessage.workspace_id == workspace_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise InboxMessageNotFound()
    return row


async def update(session: AsyncSession, row: InboundMessage, patch: InboxUpdate) -> InboundMessage:
    now = utcnow()
    fields = patch.model_fields_set
    if "read" in fields and patch.read is not None:
        row.read_at = (row.read_at or now) if patch.read else None
    if "archived" in fields and patch.archived is not None:
        row.archived_at = (row.archived_at or now) if patch.archived else None
    await session.flush()
    return row


def _snippet(row: InboundMessage) -> str | None:
    text = row.new_text or row.text_body or ""
    return " ".join(text.split())[:SNIPPET] or None


def to_item(row: InboundMessage) -> InboxItem:
    return InboxItem(**_item_fields(row))


def _item_fields(row: InboundMessage) -> dict[str, object]:
    return {
        "id": row.id,
        "account_id": row.account_id,
        "folder": row.folder,
        "kind": row.kind,
        "from_address": row.from_address,
        "from_name": row.from_name,
        "subject": row.subject,
        "snippet": _snippet(row),
        "date": row.date_header,
        "received_at": row.created_at,
        "read": row.read_at is not None,
        "archived": row.archived_at is not None,
        "campaign_id": row.campaign_id,
        "enrollment_id": row.enrollment_id,
        "contact_id": row.contact_id,
    }


def _headers(raw: bytes) -> list[Header]:
    try:
        parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        items = parsed.items()[:MAX_HEADERS]
    except Exception:  # a header block the parser cannot read shows no headers, not an error
        return []
    return [Header(name=str(name), value=decode_header_value(value)[:2000]) for name, value in items]


def _classification(row: InboundMessage) -> Classification:
    data = row.classification or {}
    recipients = [
        InboundRecipient(
            address=str(r.get("address", "")),
            action=str(r.get("action", "")),
            status=str(r.get("status", "")),
            hard=bool(r.get("hard")),
            permanent=bool(r.get("permanent")),
            reason=str(r.get("reason", "")),
            diagnostic=str(r.get("diagnostic", ""))[:1000],
        )
        for r in data.get("recipients", [])
    ]
    return Classification(
        kind=row.kind,
        detected_kind=data.get("detected_kind", row.kind),
        reasons=list(row.reasons or []),
        recipients=recipients,
        original_message_id=data.get("matched_message_id"),
        feedback_type=data.get("feedback_type"),
        parse_notes=list(data.get("parse_notes", [])),
    )


def reply_read(reply: OutboundReply) -> OutboundReplyRead:
    return OutboundReplyRead(
        id=reply.id,
        inbound_message_id=reply.inbound_message_id,
        account_id=reply.account_id,
        to=reply.to_email,
        subject=reply.subject,
        message_id=reply.message_id_header,
        in_reply_to=reply.in_reply_to,
        reply_code=reply.reply_code,
        sent_at=reply.sent_at,
    )


async def to_read(session: AsyncSession, row: InboundMessage) -> InboxMessageRead:
    replies = await session.scalars(
        select(OutboundReply).where(OutboundReply.inbound_message_id == row.id).order_by(OutboundReply.id)
    )
    match = None
    if row.match_method is not None:
        match = InboxMatch(
            method=row.match_method,
            sent_message_id=row.sent_message_id,
            enrollment_id=row.enrollment_id,
            contact_id=row.contact_id,
            campaign_id=row.campaign_id,
        )
    return InboxMessageRead(
        **_item_fields(row),
        to=row.to_addresses,
        message_id=row.message_id_header,
        headers=_headers(row.raw),
        text=row.text_body,
        html=row.html_body,
        new_text=row.new_text,
        size=row.size,
        truncated=row.truncated,
        match=match,
        classification=_classification(row),
        replies=[reply_read(r) for r in replies],
    )
