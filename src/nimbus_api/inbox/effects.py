"""What an inbound message changes, in the transaction that stores it (``ingest.store``), each with its event.

Runs once per stored message (a duplicate is never stored, so never acts twice), only when it matched one
of our sent messages (``matching``):

* ``reply``: the enrollment is ``replied`` (from ``active`` or ``completed``; ``replied_at`` set once), its
  queued and deferred follow-ups are ``cancelled`` and their budget reservations given back; a leased one
  is let go (it may be on the wire: when it is recorded, the enrollment is no longer active and nothing
  follows it). ``enrollment.replied``.
* ``auto_reply``: ``auto_replied_at`` on the enrollment; the sequence goes on unless the campaign has
  ``stop_on_auto_reply`` (then ``stopped``, follow-ups cancelled). ``enrollment.auto_replied``.
* ``bounce``: the sent message becomes ``bounced`` (status, diagnostic and reason kept) and counts toward
  the account's 7-day rate and the campaign's bounce guard, once: a message already ``bounced``, or
  ``failed`` at send time, is not counted again. A ``hard`` recipient (the address is bad) is suppressed
  (``hard_bounce``), its enrollment ``bounced`` and follow-ups cancelled. ``message.bounced``.
* ``complaint``: the address is suppressed (``complaint``), the enrollment ``stopped``, follow-ups
  cancelled, the account's complaint rate counted. ``message.complained``. Once per message and recipient,
  whichever report came first (a feedback-loop mail, or the sending service's webhook, ``provider_hooks``,
  which applies its reports through these same functions): ``message_reports`` keeps the first.
* a hard bounce or a complaint may also put the inbox in cooldown (``stages.cooldown``).
* ``delivery_report`` (delayed, relayed, delivered) and ``other``: stored, nothing else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.campaigns import bounce_guard
from nimbus_api.classify import Classification, Recipient, quotes
from nimbus_api.classify.parsing import Parsed
from nimbus_api.events.catalogue import (
    ContactSuppressedData,
    EnrollmentAutoRepliedData,
    EnrollmentBouncedData,
    EnrollmentRepliedData,
    MessageBouncedData,
    MessageComplainedData,
)
from nimbus_api.health import requests as health
from nimbus_api.inbox import rates
from nimbus_api.inbox.matching import Match
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_id
from nimbus_api.models import Campaign, Enrollment, Message, MessageReport, Suppression
from nimbus_api.sending.rotation import release
from nimbus_api.stages import cooldown

if TYPE_CHECKING:
    from nimbus_api.inbox.ingest import Target

SNIPPET = 300


def new_text_of(parsed: Parsed, verdict: Classification) -> str:
    """The text the sender wrote, without the quoted history and signature (``classify.quotes``)."""
    return quotes.new_text(parsed)


@dataclass(frozen=True)
class Effect:
    """What ``apply`` did, for the caller's counters and tests."""

    action: str
    counted: bool = False


async def apply(
    session: AsyncSession, target: Target, row: dict[str, Any], verdict: Classification, found: Match | None
) -> Effect:
    kind = row["kind"]
    now = utcnow()
    if found is None or found.account_id is None:
        if kind in ("bounce", "complaint"):
            return Effect("unmatched")
        return Effect("none")
    if kind == "reply":
        return await _on_reply(session, row, found, now)
    if kind == "auto_reply":
        return await _on_auto_reply(session, row, found, now)
    if kind == "bounce":
        return await _on_bounce(session, target, row, verdict, found, now)
    if kind == "complaint":
        return await _on_complaint(session, target, row, verdict, found, now)
    return Effect("none")


# --- shared ----------------------------------------------------------------------------------------------


async def cancel_pending(session: AsyncSession, enrollment_id: uuid.UUID, now: datetime) -> int:
    """Queued and deferred messages of the enrollment become ``cancelled``; their reservations are given back."""
    rows = await session.execute(
        update(Message)
        .where(Message.enrollment_id == enrollment_id, Message.state.in_(("queued", "deferred")))
        .values(state="cancelled", retry_at=None, updated_at=now)
        .returning(Message.account_id, Message.step, Message.budget_day)
    )
    cancelled = rows.all()
    for account_id, step, day in cancelled:
        if account_id is not None and day is not None:
            await release(session, account_id, first_step=step == 0, day=day)
    return len(cancelled)


async def _enrollment(session: AsyncSession, enrollment_id: uuid.UUID) -> Enrollment | None:
    return await session.scalar(select(Enrollment).where(Enrollment.id == enrollment_id).with_for_update())


async def _suppress(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    email: str,
    reason: Literal["hard_bounce", "complaint"],
    detail: str | None,
) -> None:
    suppression_id = await session.scalar(
        insert(Suppression)
        .values(id=new_id(), workspace_id=workspace_id, email=email.lower(), reason=reason, detail=detail)
        .on_conflict_do_nothing()
        .returning(Suppression.id)
    )
    if suppression_id is not None:
        events.emit(
            session,
            workspace_id,
            "contact.suppressed",
            ContactSuppressedData(suppression_id=suppression_id, email=email.lower(), reason=reason),
        )


async def first_report(session: AsyncSession, message_id: uuid.UUID, email: str, kind: str, source: str) -> bool:
    """Whether this is the first ``kind`` report for the message and recipient (and record it if so)."""
    claimed = await session.scalar(
        insert(MessageReport)
        .values(message_id=message_id, email=email.lower()[:320], kind=kind, source=source, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(MessageReport.message_id)
    )
    return claimed is not None


def _snippet(row: dict[str, Any]) -> str | None:
    text = (row.get("new_text") or row.get("text_body") or "").strip()
    return " ".join(text.split())[:SNIPPET] or None


def _reply_data(row: dict[str, Any], found: Match, enrollment: Enrollment) -> dict[str, Any]:
    assert found.account_id is not None
    return {
        "enrollment_id": enrollment.id,
        "campaign_id": enrollment.campaign_id,
        "contact_id": enrollment.contact_id,
        "email": found.to_email,
        "account_id": found.account_id,
        "inbound_message_id": row["id"],
        "subject": (row.get("subject") or None) and str(row["subject"])[:500],
        "snippet": _snippet(row),
    }


# --- per kind -------------------------------------------------------------------------------------------


async def _on_reply(session: AsyncSession, row: dict[str, Any], found: Match, now: datetime) -> Effect:
    enrollment = await _enrollment(session, found.enrollment_id)
    if enrollment is None:
        return Effect("none")
    if enrollment.replied_at is None:
        enrollment.replied_at = now
    if enrollment.status in ("active", "completed"):
        enrollment.status, enrollment.stop_reason, enrollment.next_send_at = "replied", "replied", None
    enrollment.updated_at = now
    await session.flush()
    await cancel_pending(session, enrollment.id, now)
    events.emit(
        session,
        enrollment.workspace_id,
        "enrollment.replied",
        EnrollmentRepliedData(**_reply_data(row, found, enrollment)),
    )
    return Effect("replied")


async def _on_auto_reply(session: AsyncSession, row: dict[str, Any], found: Match, now: datetime) -> Effect:
    enrollment = await _enrollment(session, found.enrollment_id)
    if enrollment is None:
        return Effect("none")
    enrollment.auto_replied_at = now
    enrollment.updated_at = now
    stop = await session.scalar(select(Campaign.stop_on_auto_reply).where(Campaign.id == enrollment.campaign_id))
    action = "auto_replied"
    if stop and enrollment.status == "active":
        enrollment.status, enrollment.stop_reason, enrollment.next_send_at = "stopped", "auto_reply", None
        await session.flush()
        await cancel_pending(session, enrollment.id, now)
        action = "stopped_on_auto_reply"
    events.emit(
        session,
        enrollment.workspace_id,
        "enrollment.auto_replied",
        EnrollmentAutoRepliedData(**_reply_data(row, found, enrollment)),
    )
    return Effect(action)


def _recipient_for(verdict: Classification, to_email: str) -> Recipient | None:
    permanent = [r for r in verdict.recipients if r.permanent]
    for recipient in permanent:
        if recipient.address.lower() == to_email.lower():
            return recipient
    return permanent[0] if permanent else None


async def _on_bounce(
    session: AsyncSession,
    target: Target,
    row: dict[str, Any],
    verdict: Classification,
    found: Match,
    now: datetime,
) -> Effect:
    recipient = _recipient_for(verdict, found.to_email)
    if recipient is None:  # a report without a permanent failure is a delivery report, not a bounce
        return Effect("none")
    message = await session.scalar(select(Message).where(Message.id == found.message_id).with_for_update())
    if message is None or message.state not in ("sent", "unknown"):
        return Effect("already_counted")  # bounced before, or refused at send time (counted then)
    assert found.account_id is not None
    message.state = "bounced"
    message.bounced_at = now
    message.reply_enhanced = recipient.status[:20] or message.reply_enhanced
    message.reply_text = (recipient.diagnostic or message.reply_text or "")[:1000] or None
    message.error_code = f"bounce.{recipient.reason}"[:60]
    message.updated_at = now
    await session.flush()
    await rates.count(session, found.account_id, "bounces", now)
    await health.request(session, [found.account_id])
    enrollment = await _enrollment(session, found.enrollment_id)
    if recipient.hard and enrollment is not None:
        await _suppress(
            session, message.workspace_id, found.to_email, "hard_bounce", recipient.diagnostic[:500] or None
        )
        newly = enrollment.status not in ("bounced",)
        if enrollment.status in ("active", "completed"):
            enrollment.status, enrollment.stop_reason, enrollment.next_send_at = "bounced", "hard bounce (report)", None
            enrollment.updated_at = now
            await session.flush()
            await cancel_pending(session, enrollment.id, now)
        if newly:
            events.emit(
                session,
                message.workspace_id,
                "enrollment.bounced",
                EnrollmentBouncedData(
                    enrollment_id=enrollment.id,
                    campaign_id=enrollment.campaign_id,
                    contact_id=enrollment.contact_id,
                    email=found.to_email,
                    reason="hard_bounce",
                    message_id=message.id,
                    smtp_code=int(recipient.reply_code) if recipient.reply_code.isdigit() else None,
                    enhanced_code=recipient.status[:20] or None,
                    server_text=recipient.diagnostic[:500] or None,
                ),
            )
    events.emit(
        session,
        message.workspace_id,
        "message.bounced",
        MessageBouncedData(
            message_id=message.id,
            enrollment_id=found.enrollment_id,
            campaign_id=found.campaign_id,
            account_id=found.account_id,
            email=found.to_email,
            kind="hard" if recipient.hard else "soft",
            enhanced_code=recipient.status[:20] or None,
            diagnostic=recipient.diagnostic[:500] or None,
            reason=recipient.reason,
            inbound_message_id=row["id"],
        ),
    )
    await bounce_guard.check(session, found.campaign_id, found.account_id, min_sample=target.min_sample, now=now)
    if recipient.hard:
        await cooldown.after_hard_bounce(session, found.account_id, now, target.cooldown)
    return Effect("bounced", counted=True)


async def _on_complaint(
    session: AsyncSession,
    target: Target,
    row: dict[str, Any],
    verdict: Classification,
    found: Match,
    now: datetime,
) -> Effect:
    assert found.account_id is not None
    message = await session.get(Message, found.message_id)
    workspace_id = message.workspace_id if message is not None else None
    if workspace_id is None:
        return Effect("none")
    if not await first_report(session, found.message_id, found.to_email, "complaint", row.get("source", "inbox")):
        return Effect("already_counted")  # the same complaint, reported the other way first
    await _suppress(
        session, workspace_id, found.to_email, "complaint", f"feedback report ({verdict.feedback_type or 'abuse'})"
    )
    enrollment = await _enrollment(session, found.enrollment_id)
    if enrollment is not None and enrollment.status in ("active", "completed"):
        enrollment.status, enrollment.stop_reason, enrollment.next_send_at = "stopped", "complaint", None
        enrollment.updated_at = now
        await session.flush()
        await cancel_pending(session, enrollment.id, now)
    await rates.count(session, found.account_id, "complaints", now)
    await health.request(session, [found.account_id])
    await cooldown.after_complaint(session, found.account_id, now, target.cooldown)
    events.emit(
        session,
        workspace_id,
        "message.complained",
        MessageComplainedData(
            message_id=found.message_id,
            enrollment_id=found.enrollment_id,
            campaign_id=found.campaign_id,
            account_id=found.account_id,
            email=found.to_email,
            feedback_type=verdict.feedback_type[:100] or None,
            inbound_message_id=row["id"],
        ),
    )
    return Effect("complained")
