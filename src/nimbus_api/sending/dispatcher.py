"""Dispatch: due enrollments become queued messages, each with an inbox picked and a send reserved.

Per enrollment (``models.enrollment``), one dispatch moves it like this:

    active, next_send_at <= now
        -> contact suppressed                      : stopped ("suppressed"), nothing queued
        -> MX check fails (verify_email_mx, step 1): bounced ("MX check failed at dispatch"), no SMTP
        -> no inbox eligible                       : next_send_at pushed to the retry time, reasons kept
        -> inbox picked                            : message queued on that inbox, next_send_at = NULL
                                                     (in flight; the sender sets the next step's time)
        -> contact data renders badly              : failed ("template: ..."), reservation given back

A campaign outside its sending window, or whose whole pool used its day
(``exhausted_until``), is skipped without touching its enrollments. Runs inside the caller's
transaction: the worker task commits, then wakes the senders of the inboxes that got messages.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.campaigns.templates import TemplateProblem, render_step
from nimbus_api.kit.db import utc_day
from nimbus_api.models import (
    Campaign,
    CampaignStep,
    Contact,
    EmailAccount,
    Enrollment,
    Message,
    Suppression,
    Workspace,
)
from nimbus_api.sending.mime import new_message_id
from nimbus_api.sending.mx import MxChecker
from nimbus_api.sending.rotation import PickRequest, pick_inbox, release

log = structlog.get_logger(__name__)

NO_INBOX_RETRY = timedelta(minutes=5)
BUSY_RETRY = timedelta(seconds=5)


@dataclass
class DispatchResult:
    queued: Counter[uuid.UUID] = field(default_factory=Counter)
    deferred: int = 0
    stopped: int = 0
    bounced: int = 0
    failed: int = 0
    skipped_reason: str | None = None


def in_window(campaign: Campaign, now: datetime) -> bool:
    local = now.astimezone(ZoneInfo(campaign.timezone))
    if local.weekday() not in campaign.send_days:
        return False
    start, end = campaign.send_start, campaign.send_end
    current = local.time().replace(tzinfo=None)
    return start <= current < end if start < end else (current >= start or current < end)


def next_window_start(campaign: Campaign, now: datetime) -> datetime:
    """The next moment the campaign may send (checked minute by minute over at most 8 days)."""
    zone = ZoneInfo(campaign.timezone)
    local = now.astimezone(zone)
    for day in range(8):
        candidate_day = (local + timedelta(days=day)).date()
        start = datetime.combine(candidate_day, campaign.send_start, tzinfo=zone)
        if day == 0 and start <= local:
            continue
        if start.weekday() in campaign.send_days:
            return start.astimezone(UTC)
    return now + timedelta(days=1)


def unsubscribe_links(public_url: str, account_email: str, token: str) -> tuple[str, str]:
    return f"{public_url.rstrip('/')}/u/{token}", f"mailto:{account_email}?subject=unsubscribe-{token}"


async def dispatch_campaign(
    session: AsyncSession,
    campaign: Campaign,
    *,
    now: datetime,
    public_url: str,
    mx: MxChecker | None,
    batch: int = 500,
) -> DispatchResult:
    result = DispatchResult()
    if campaign.status != "active":
        result.skipped_reason = "not active"
        return result
    if campaign.exhausted_until and campaign.exhausted_until > now:
        result.skipped_reason = "every inbox used its day"
        return result
    if not in_window(campaign, now):
        result.skipped_reason = "outside the sending window"
        return result
    remaining = await _monthly_remaining(session, campaign.workspace_id, now)
    if remaining is not None:
        if remaining <= 0:
            result.skipped_reason = "monthly send quota reached"
            return result
        batch = min(batch, remaining)
    steps = list(
        await session.scalars(
            select(CampaignStep).where(CampaignStep.campaign_id == campaign.id).order_by(CampaignStep.position)
        )
    )
    due = (
        await session.execute(
            select(Enrollment, Contact)
            .join(Contact, Contact.id == Enrollment.contact_id)
            .where(
                Enrollment.campaign_id == campaign.id,
                Enrollment.status == "active",
                Enrollment.next_send_at <= now,
            )
            .order_by(Enrollment.next_send_at)
            .limit(batch)
            .with_for_update(of=Enrollment, skip_locked=True)
        )
    ).all()
    if not due:
        return result
    suppressed = set(
        await session.scalars(
            select(func.lower(Suppression.email)).where(
                Suppression.workspace_id == campaign.workspace_id,
                func.lower(Suppression.email).in_([c.email.lower() for _, c in due]),
            )
        )
    )
    no_inbox = False
    for enrollment, contact in due:
        if enrollment.next_step >= len(steps):
            enrollment.status, enrollment.next_send_at = "completed", None
            continue
        if contact.email.lower() in suppressed:
            enrollment.status, enrollment.stop_reason, enrollment.next_send_at = "stopped", "suppressed", None
            result.stopped += 1
            continue
        step = steps[enrollment.next_step]
        first = enrollment.next_step == 0
        if first and campaign.verify_email_mx and mx is not None:
            verdict = await mx.accepts_mail(contact.email.rpartition("@")[2])
            if not verdict:
                enrollment.status = "bounced"
                enrollment.stop_reason = "MX check failed at dispatch"
                enrollment.next_send_at = None
                result.bounced += 1
                continue
        if no_inbox and first:
            enrollment.next_send_at = now + NO_INBOX_RETRY
            result.deferred += 1
            continue
        threaded = not first and step.threaded and enrollment.account_id is not None
        account_id = await pick_inbox(
            session,
            PickRequest(
                campaign_id=campaign.id,
                campaign_type=campaign.type,
                min_health_score=campaign.min_health_score,
                first_step=first,
                now=now,
                only_account=enrollment.account_id if threaded else None,
            ),
        )
        if account_id is None:
            enrollment.next_send_at = now + NO_INBOX_RETRY
            result.deferred += 1
            no_inbox = no_inbox or first
            continue
        try:
            await _queue(session, campaign, step, enrollment, contact, account_id, threaded, public_url)
        except TemplateProblem as exc:
            # Checked at save time; what is left is contact data that renders badly (a line break in a
            # subject). The contact gets nothing: never a header built from it.
            await release(session, account_id, first_step=first, day=utc_day(now))
            enrollment.status, enrollment.stop_reason, enrollment.next_send_at = (
                "failed",
                f"template: {exc}"[:200],
                None,
            )
            result.failed += 1
            continue
        if first:
            enrollment.account_id = account_id
        enrollment.next_send_at = None
        result.queued[account_id] += 1
    await session.flush()
    return result


async def _queue(
    session: AsyncSession,
    campaign: Campaign,
    step: CampaignStep,
    enrollment: Enrollment,
    contact: Contact,
    account_id: uuid.UUID,
    threaded: bool,
    public_url: str,
) -> Message:
    account = await session.get_one(EmailAccount, account_id)
    unsubscribe_url, _ = unsubscribe_links(public_url, account.email, enrollment.unsubscribe_token)
    rendered = render_step(step, contact, unsubscribe_url)
    subject, in_reply_to = rendered.subject, None
    if threaded:
        first_message = await session.scalar(
            select(Message).where(Message.enrollment_id == enrollment.id, Message.step == 0)
        )
        if first_message is not None:
            in_reply_to = first_message.message_id_header
            base = first_message.subject
            subject = base if base.lower().startswith("re:") else f"Re: {base}"
    message = Message(
        workspace_id=campaign.workspace_id,
        campaign_id=campaign.id,
        enrollment_id=enrollment.id,
        contact_id=contact.id,
        account_id=account_id,
        step=enrollment.next_step,
        state="queued",
        to_email=contact.email,
        subject=subject,
        message_id_header=new_message_id(account.email.rpartition("@")[2]),
        in_reply_to=in_reply_to,
    )
    session.add(message)
    return message


async def _monthly_remaining(session: AsyncSession, workspace_id: uuid.UUID, now: datetime) -> int | None:
    """What is left of the workspace's ``monthly_send_quota`` (None: no quota). Messages queued or in
    flight this month count too, so the quota is never overshot by what is already on its way."""
    quota = await session.scalar(select(Workspace.monthly_send_quota).where(Workspace.id == workspace_id))
    if quota is None:
        return None
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    used = await session.scalar(
        select(func.count()).where(
            Message.workspace_id == workspace_id,
            Message.created_at >= month_start,
            Message.state.in_(("queued", "leased", "deferred", "sent", "unknown")),
        )
    )
    return quota - (used or 0)


def utc_midnight_after(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)
