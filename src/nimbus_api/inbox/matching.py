"""Which of our sent messages an inbound message is about.

In order, the first that finds one wins (``method`` is stored with the inbound row):

1. ``message_id``: the Message-ID quoted by a report (the returned ``message/rfc822`` or
   ``text/rfc822-headers`` part) or an auto-reply's ``In-Reply-To``;
2. ``in_reply_to`` / ``references``: a reply's threading headers, newest reference first (an answer we
   sent from the inbox, ``outbound_replies``, stands for the message it answered);
3. ``sender`` (replies and auto-replies): the From address is a contact of the workspace with an
   enrollment sent from this account (an active one first, then the most recently changed); the match is
   that enrollment's latest sent message;
4. ``recipient`` (bounces and complaints without a usable Message-ID): the same, by the failed
   recipient's address.

Only messages of the same workspace match; ids, never addresses alone, decide for the first two.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify import Classification
from nimbus_api.models import Contact, Enrollment, InboundMessage, Message, OutboundReply


@dataclass(frozen=True)
class Match:
    method: str
    message_id: uuid.UUID
    enrollment_id: uuid.UUID
    campaign_id: uuid.UUID
    contact_id: uuid.UUID
    account_id: uuid.UUID | None
    to_email: str
    step: int


def _bracketed(ids: Sequence[str]) -> list[str]:
    return [i if i.startswith("<") else f"<{i}>" for i in ids if i]


async def _by_ids(session: AsyncSession, workspace_id: uuid.UUID, ids: Sequence[str], method: str) -> Match | None:
    wanted = _bracketed(ids)
    if not wanted:
        return None
    rows = (
        await session.execute(
            select(Message).where(Message.message_id_header.in_(wanted), Message.workspace_id == workspace_id)
        )
    ).scalars()
    found = {m.message_id_header: m for m in rows}
    # our answers from the inbox (``outbound_replies``) stand for the message they answered
    answered = await session.execute(
        select(OutboundReply.message_id_header, Message)
        .join(InboundMessage, InboundMessage.id == OutboundReply.inbound_message_id)
        .join(Message, Message.id == InboundMessage.sent_message_id)
        .where(OutboundReply.message_id_header.in_(wanted), OutboundReply.workspace_id == workspace_id)
    )
    for header, answered_message in answered:
        found.setdefault(header, answered_message)
    for candidate in wanted:  # the caller's order: most specific first
        hit = found.get(candidate)
        if hit is not None:
            return _match(hit, method)
    return None


async def _by_address(
    session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID, address: str, method: str
) -> Match | None:
    if not address:
        return None
    contact_id = await session.scalar(
        select(Contact.id).where(Contact.workspace_id == workspace_id, func.lower(Contact.email) == address.lower())
    )
    if contact_id is None:
        return None
    enrollment_id = await session.scalar(
        select(Enrollment.id)
        .where(Enrollment.contact_id == contact_id, Enrollment.account_id == account_id)
        .order_by(case((Enrollment.status == "active", 0), else_=1), Enrollment.updated_at.desc())
        .limit(1)
    )
    if enrollment_id is None:
        return None
    message = await session.scalar(
        select(Message)
        .where(Message.enrollment_id == enrollment_id, Message.sent_at.is_not(None))
        .order_by(Message.step.desc())
        .limit(1)
    )
    return _match(message, method) if message is not None else None


def _match(message: Message, method: str) -> Match:
    return Match(
        method=method,
        message_id=message.id,
        enrollment_id=message.enrollment_id,
        campaign_id=message.campaign_id,
        contact_id=message.contact_id,
        account_id=message.account_id,
        to_email=message.to_email,
        step=message.step,
    )


async def match(
    session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID, verdict: Classification
) -> Match | None:
    if verdict.original_message_id:
        found = await _by_ids(session, workspace_id, [verdict.original_message_id], "message_id")
        if found is not None:
            return found
    if verdict.kind in ("reply", "auto_reply", "other"):
        ids = [verdict.in_reply_to, *reversed(verdict.references)]
        found = await _by_ids(session, workspace_id, list(dict.fromkeys(i for i in ids if i)), "in_reply_to")
        if found is not None:
            return found
        return await _by_address(session, workspace_id, account_id, verdict.from_address, "sender")
    if verdict.kind in ("bounce", "complaint", "delivery_report"):
        address = verdict.original_recipient or next((r.address for r in verdict.recipients if r.address), "")
        return await _by_address(session, workspace_id, account_id, address, "recipient")
    return None
