"""Dispatch: due enrollments become queued messages, each with an inbox picked and a send reserved.

Per enrollment (``models.enrollment``), one dispatch moves it like this:

    active, next_send_at <= now
        -> contact suppressed                      : stopped ("suppressed"), nothing queued
        -> MX check fails (verify_email_mx, step 1): bounced ("MX check failed at dispatch"), no SMTP
        -> contact data renders badly              : failed ("template: ..."), nothing reserved
        -> inbox picked                            : message queued on that inbox, next_send_at = NULL
                                                     (in flight; the sender sets the next step's time)
        -> no inbox eligible                       : next_send_at = the earliest moment an inbox could
                                                     take it (``_ready_at``), defer_reason set; the
                                                     campaign's last_deferral says why, per inbox

Picks are made in bulk: one statement per group of sends (step-1 sends together, threaded follow-ups
per inbox), each equal to that many single picks (``sending.rotation``).

A campaign outside its sending window, or whose whole pool used its day
(``exhausted_until``), is skipped without touching its enrollments. Runs inside the caller's
transaction: the worker task commits, then wakes the senders of the inboxes that got messages.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.campaigns.pool import PoolInbox, load_pools
from nimbus_api.campaigns.templates import TemplateProblem, render_subject
from nimbus_api.events.catalogue import EnrollmentBouncedData, EnrollmentCompletedData
from nimbus_api.kit.addresses import ascii_domain
from nimbus_api.kit.db import utc_day, utcnow
from nimbus_api.kit.ids import new_ids
from nimbus_api.models import (
    Campaign,
    CampaignStep,
    Contact,
    EmailAccount,
    Enrollment,
    Message,
    Workspace,
)
from nimbus_api.sending.mime import new_message_ids
from nimbus_api.sending.mx import MxChecker
from nimbus_api.sending.rotation import PickRequest, pick_inboxes

log = structlog.get_logger(__name__)

NO_INBOX_RETRY = timedelta(minutes=5)
"""How soon a send that waits on a person (a disabled inbox, health, stage...) is looked at again."""
BUSY_RETRY = timedelta(seconds=5)
"""How soon a send is tried again when an eligible inbox was busy (locked by another dispatcher)."""
MIN_RETRY = timedelta(seconds=1)


@dataclass
class DispatchResult:
    due: int = 0  # due enrollments looked at (the batch was full when this equals the batch size)
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
    """The one-click URL and the mailto of ``List-Unsubscribe``; the mailto's domain in A-labels and a
    non-ASCII local part percent-encoded (RFC 6068), so the header stays ASCII."""
    local, _, domain = account_email.rpartition("@")
    mailto = f"mailto:{quote(local, safe='!$&*+-.=^_`{|}~')}@{ascii_domain(domain)}?subject=unsubscribe-{token}"
    return f"{public_url.rstrip('/')}/u/{token}", mailto


@dataclass(frozen=True)
class _Due:
    """A due enrollment with its contact (the contact fields are what templates read)."""

    enrollment_id: uuid.UUID
    next_step: int
    account_id: uuid.UUID | None
    unsubscribe_token: str
    contact_id: uuid.UUID
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    fields: dict[str, Any]


async def dispatch_campaign(
    session: AsyncSession,
    campaign: Campaign,
    *,
    now: datetime,
    public_url: str,
    mx: MxChecker | None,
    batch: int = 500,
) -> DispatchResult:
    """Up to ``batch`` due enrollments of the campaign, in bulk: one pick statement per group of sends
    (step-1 sends together; threaded follow-ups per inbox), one insert of the queued messages, one
    update of the enrollments."""
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
    due = [
        _Due(*row)
        for row in await session.execute(
            select(
                Enrollment.id,
                Enrollment.next_step,
                Enrollment.account_id,
                Enrollment.unsubscribe_token,
                Contact.id,
                Contact.email,
                Contact.first_name,
                Contact.last_name,
                Contact.company,
                Contact.fields,
            )
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
    ]
    if not due:
        return result
    result.due = len(due)
    suppressed = set(
        await session.scalars(
            SUPPRESSED_SQL, {"workspace_id": campaign.workspace_id, "emails": sorted({d.email.lower() for d in due})}
        )
    )
    threads = await _first_messages(session, [d.enrollment_id for d in due if d.next_step > 0])
    updates: list[dict[str, Any]] = []

    def settle(d: _Due, status: str, reason: str | None, *, next_send_at: datetime | None = None) -> None:
        updates.append(
            {
                "id": d.enrollment_id,
                "status": status,
                "stop_reason": reason,
                "next_send_at": next_send_at,
                "account_id": d.account_id,
                "defer_reason": None,
            }
        )

    # Group what needs an inbox: step-1 (and unthreaded) sends pick from the pool, threaded follow-ups
    # go through the inbox of their step 1.
    groups: dict[tuple[bool, uuid.UUID | None], list[tuple[_Due, CampaignStep, str, str | None]]] = {}
    completed: list[EnrollmentCompletedData] = []
    bounced: list[EnrollmentBouncedData] = []
    for d in due:
        if d.next_step >= len(steps):
            settle(d, "completed", None)
            completed.append(
                EnrollmentCompletedData(
                    enrollment_id=d.enrollment_id, campaign_id=campaign.id, contact_id=d.contact_id, email=d.email
                )
            )
            continue
        if d.email.lower() in suppressed:
            settle(d, "stopped", "suppressed")
            result.stopped += 1
            continue
        step = steps[d.next_step]
        first = d.next_step == 0
        check_mx = first and campaign.verify_email_mx and mx is not None
        if check_mx and mx is not None and not await mx.accepts_mail(ascii_domain(d.email.rpartition("@")[2])):
            settle(d, "bounced", "MX check failed at dispatch")
            bounced.append(_mx_bounce(campaign, d))
            result.bounced += 1
            continue
        thread = threads.get(d.enrollment_id) if not first and step.threaded else None
        only_account = d.account_id if thread is not None else None
        if thread is not None:
            base = thread[1]
            subject, in_reply_to = (base if base.lower().startswith("re:") else f"Re: {base}"), thread[0]
        else:
            try:
                # Checked at save time; what is left is contact data that renders badly (a line break
                # in a subject). The contact gets nothing: never a header built from it.
                subject = render_subject(step, d, unsubscribe_links(public_url, "", d.unsubscribe_token)[0])
            except TemplateProblem as exc:
                settle(d, "failed", f"template: {exc}"[:200])
                result.failed += 1
                continue
            in_reply_to = None
        groups.setdefault((first, only_account), []).append((d, step, subject, in_reply_to))

    messages: list[dict[str, Any]] = []
    unplaced: list[tuple[_Due, bool, uuid.UUID | None]] = []
    domains: dict[uuid.UUID, str] = {}
    day = utc_day(now)
    for (first, only_account), members in groups.items():
        picked = await pick_inboxes(
            session,
            PickRequest(
                workspace_id=campaign.workspace_id,
                campaign_id=campaign.id,
                campaign_type=campaign.type,
                min_health_score=campaign.min_health_score,
                first_step=first,
                now=now,
                only_account=only_account,
            ),
            len(members),
        )
        missing = {a for a in picked if a not in domains}
        if missing:
            for account_id, email in await session.execute(
                select(EmailAccount.id, EmailAccount.email).where(EmailAccount.id.in_(missing))
            ):
                domains[account_id] = ascii_domain(email.rpartition("@")[2])
        placed = members[: len(picked)]
        message_ids = new_message_ids([domains[account_id] for account_id in picked])
        row_ids = new_ids(len(placed))
        for (d, _step, subject, in_reply_to), account_id, message_id, row_id in zip(
            placed, picked, message_ids, row_ids, strict=True
        ):
            messages.append(
                {
                    "id": row_id,
                    "workspace_id": campaign.workspace_id,
                    "campaign_id": campaign.id,
                    "enrollment_id": d.enrollment_id,
                    "contact_id": d.contact_id,
                    "account_id": account_id,
                    "step": d.next_step,
                    "to_email": d.email,
                    "subject": subject,
                    "message_id_header": message_id,
                    "in_reply_to": in_reply_to,
                    "budget_day": day,
                }
            )
            updates.append(
                {
                    "id": d.enrollment_id,
                    "status": "active",
                    "stop_reason": None,
                    "next_send_at": None,  # in flight: the sender schedules the next step
                    # Step 1 sets the thread's inbox; an enrollment whose inbox was deleted takes the new one.
                    "account_id": account_id if first or d.account_id is None else d.account_id,
                    "defer_reason": None,
                }
            )
            result.queued[account_id] += 1
        unplaced.extend((d, first, only_account) for d, _, _, _ in members[len(picked) :])

    if unplaced:
        await _defer(session, campaign, unplaced, now, settle_deferred=updates.append)
        result.deferred = len(unplaced)
    if messages:
        await session.execute(
            INSERT_MESSAGES_SQL,
            {column: [m[column] for m in messages] for column in _MESSAGE_COLUMNS} | {"now": utcnow()},
        )
    if updates:
        await session.execute(
            UPDATE_ENROLLMENTS_SQL, {column: [u[column] for u in updates] for column in _ENROLLMENT_COLUMNS}
        )
    if completed:
        events.emit_many(session, campaign.workspace_id, "enrollment.completed", completed)
    if bounced:
        events.emit_many(session, campaign.workspace_id, "enrollment.bounced", bounced)
    return result


def _mx_bounce(campaign: Campaign, d: _Due) -> EnrollmentBouncedData:
    return EnrollmentBouncedData(
        enrollment_id=d.enrollment_id,
        campaign_id=campaign.id,
        contact_id=d.contact_id,
        email=d.email,
        reason="mx_check",
        message_id=None,
        smtp_code=None,
        enhanced_code=None,
        server_text=None,
    )


SUPPRESSED_SQL = text(
    """
SELECT lower(email) FROM suppressions
WHERE workspace_id = :workspace_id AND lower(email) = ANY(CAST(:emails AS text[]))
"""
)
"""Which of a batch's addresses are suppressed: one array parameter (an ``IN`` list of a thousand
parameters is compiled anew for every batch size), matched on ``uq_suppressions_workspace_email``."""

_MESSAGE_COLUMNS = (
    "id",
    "workspace_id",
    "campaign_id",
    "enrollment_id",
    "contact_id",
    "account_id",
    "step",
    "to_email",
    "subject",
    "message_id_header",
    "in_reply_to",
    "budget_day",
)
# One statement per batch, whatever its size (arrays, not one parameter set per row).
INSERT_MESSAGES_SQL = text(
    """
INSERT INTO messages (id, workspace_id, campaign_id, enrollment_id, contact_id, account_id, step, state, to_email,
                      subject, message_id_header, in_reply_to, budget_day, attempts, created_at, updated_at)
SELECT v.id, v.workspace_id, v.campaign_id, v.enrollment_id, v.contact_id, v.account_id, v.step, 'queued',
       v.to_email, v.subject, v.message_id_header, v.in_reply_to, v.budget_day, 0,
       CAST(:now AS timestamptz) + make_interval(secs => v.n / 1e6), CAST(:now AS timestamptz)
FROM unnest(CAST(:id AS uuid[]), CAST(:workspace_id AS uuid[]), CAST(:campaign_id AS uuid[]),
            CAST(:enrollment_id AS uuid[]), CAST(:contact_id AS uuid[]), CAST(:account_id AS uuid[]),
            CAST(:step AS int[]), CAST(:to_email AS varchar[]), CAST(:subject AS text[]),
            CAST(:message_id_header AS varchar[]), CAST(:in_reply_to AS varchar[]), CAST(:budget_day AS date[]))
     WITH ORDINALITY AS v(id, workspace_id, campaign_id, enrollment_id, contact_id, account_id, step, to_email,
                          subject, message_id_header, in_reply_to, budget_day, n)
"""
)
_ENROLLMENT_COLUMNS = ("id", "status", "stop_reason", "next_send_at", "account_id", "defer_reason")
UPDATE_ENROLLMENTS_SQL = text(
    """
UPDATE enrollments e
SET status = v.status, stop_reason = v.stop_reason, next_send_at = v.next_send_at, account_id = v.account_id,
    defer_reason = v.defer_reason, updated_at = now()
FROM unnest(CAST(:id AS uuid[]), CAST(:status AS varchar[]), CAST(:stop_reason AS varchar[]),
            CAST(:next_send_at AS timestamptz[]), CAST(:account_id AS uuid[]), CAST(:defer_reason AS varchar[]))
     AS v(id, status, stop_reason, next_send_at, account_id, defer_reason)
WHERE e.id = v.id
"""
)


async def _first_messages(session: AsyncSession, enrollment_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    """Step-1 ``Message-ID`` and subject per enrollment: what a threaded follow-up replies to."""
    if not enrollment_ids:
        return {}
    rows = await session.execute(
        select(Message.enrollment_id, Message.message_id_header, Message.subject).where(
            Message.enrollment_id.in_(enrollment_ids), Message.step == 0
        )
    )
    return {enrollment_id: (header, subject) for enrollment_id, header, subject in rows}


async def _defer(
    session: AsyncSession,
    campaign: Campaign,
    unplaced: list[tuple[_Due, bool, uuid.UUID | None]],
    now: datetime,
    *,
    settle_deferred: Callable[[dict[str, Any]], None],
) -> None:
    """No inbox could take these sends now: each waits until the earliest moment an inbox it may use
    could (``_ready_at``), with why recorded on the enrollment and, per inbox, on the campaign."""
    inboxes = (await load_pools(session, [campaign.id], now)).get(campaign.id, [])
    reasons: dict[uuid.UUID, str] = {}
    ready: dict[uuid.UUID, tuple[datetime, datetime]] = {}  # inbox -> (any step, step 1)
    for inbox in inboxes:
        reason, ready_at, ready_first = _ready_at(campaign, inbox, now)
        reasons[inbox.account.id] = reason
        ready[inbox.account.id] = (ready_at, ready_first)
    latest = now + NO_INBOX_RETRY
    retry_first = min((r[1] for r in ready.values()), default=latest)
    retry_any = min((r[0] for r in ready.values()), default=latest)
    first_reasons = _summary(reasons.values())
    for d, first, only_account in unplaced:
        if only_account is not None:
            at = ready.get(only_account, (latest, latest))[0]
            why = f"waiting for its inbox: {reasons.get(only_account, 'detached')}"
        else:
            at, why = (retry_first if first else retry_any), f"no inbox eligible: {first_reasons}"
        settle_deferred(
            {
                "id": d.enrollment_id,
                "status": "active",
                "stop_reason": None,
                "next_send_at": max(at, now + MIN_RETRY),
                "account_id": d.account_id,
                "defer_reason": why[:200],
            }
        )
    campaign.last_deferral = {
        "at": now.isoformat(),
        "deferred": len(unplaced),
        "retry_at": max(min(retry_first, retry_any), now + MIN_RETRY).isoformat(),
        "reasons": {str(account_id): reason for account_id, reason in reasons.items()},
    }


def _ready_at(campaign: Campaign, inbox: PoolInbox, now: datetime) -> tuple[str, datetime, datetime]:
    """Why the inbox could not take a send now, and the earliest moment it could (any step; step 1).

    A budget is back at the next UTC midnight, a cooldown at its end, an interval after it; what waits
    for a person (disabled, health, stage, restriction, paused domain) is looked at again in
    ``NO_INBOX_RETRY``; an eligible inbox (locked by another dispatcher, or its budget raced away) soon."""
    account = inbox.account
    reason: str | None = inbox.reason(campaign, now)
    new_contacts_used = inbox.usage.new_contacts if inbox.usage is not None else 0
    midnight = utc_midnight_after(now)
    if reason == "budget_exhausted":
        return reason, midnight, midnight
    if reason == "cooldown" and account.cooldown_until is not None:
        return reason, account.cooldown_until, account.cooldown_until
    if reason is not None:
        return reason, now + NO_INBOX_RETRY, now + NO_INBOX_RETRY
    interval_end = now
    if account.min_send_interval_seconds and account.last_sent_at is not None:
        interval_end = account.last_sent_at + timedelta(seconds=account.min_send_interval_seconds)
    if interval_end > now:
        first_ready = interval_end
        if account.daily_new_contacts_limit is not None and new_contacts_used >= account.daily_new_contacts_limit:
            first_ready = midnight
        return "interval", interval_end, first_ready
    if account.daily_new_contacts_limit is not None and new_contacts_used >= account.daily_new_contacts_limit:
        return "budget_exhausted", now + BUSY_RETRY, midnight
    return "busy", now + BUSY_RETRY, now + BUSY_RETRY


def _summary(reasons: Iterable[str]) -> str:
    counts = Counter(reasons)
    return ", ".join(f"{reason} ({n})" for reason, n in counts.most_common()) or "the pool is empty"


QUOTA_USED_SQL = text(
    """
SELECT (SELECT count(*) FROM messages m
        WHERE m.workspace_id = :workspace_id AND m.state = 'sent' AND m.sent_at >= :month_start)
     + (SELECT count(*) FROM messages m JOIN email_accounts a ON a.id = m.account_id
        WHERE a.workspace_id = :workspace_id AND m.state IN ('queued', 'deferred'))
     + (SELECT count(*) FROM messages m WHERE m.state = 'leased' AND m.workspace_id = :workspace_id)
     + (SELECT count(*) FROM messages m JOIN campaigns c ON c.id = m.campaign_id
        WHERE c.workspace_id = :workspace_id AND m.state = 'unknown' AND m.updated_at >= :month_start)
"""
)
"""What a workspace's monthly quota has used: sent this month, plus everything on its way (queued,
deferred or leased: it goes out soon), plus this month's ``unknown`` (it may have gone out). Each part
reads an index that holds only what it counts (``ix_messages_workspace_sent_at`` from the month's start,
the in-flight partial indexes, unknowns per campaign), so the count does not grow with the workspace's
history; the dispatcher runs it before every batch of a workspace with a quota."""


async def _monthly_remaining(session: AsyncSession, workspace_id: uuid.UUID, now: datetime) -> int | None:
    """What is left of the workspace's ``monthly_send_quota`` (None: no quota). Messages queued or in
    flight count too, so the quota is never overshot by what is already on its way."""
    quota = await session.scalar(select(Workspace.monthly_send_quota).where(Workspace.id == workspace_id))
    if quota is None:
        return None
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    used = await session.scalar(QUOTA_USED_SQL, {"workspace_id": workspace_id, "month_start": month_start})
    return quota - (used or 0)


def utc_midnight_after(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)
