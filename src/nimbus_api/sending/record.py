"""Recording what a lane did with a leased chunk (``models.message`` has the state machine): the ``sent``
messages in bulk, every other outcome with an attempt row and a transition of its own, and what never
reached the wire given back. Also the pause of an inbox whose login or relay failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api import events
from nimbus_api.campaigns import bounce_guard
from nimbus_api.events.catalogue import (
    AccountDisabledData,
    ContactSuppressedData,
    EnrollmentBouncedData,
    EnrollmentCompletedData,
)
from nimbus_api.health import requests as health
from nimbus_api.inbox import rates
from nimbus_api.kit.db import utc_day
from nimbus_api.kit.ids import new_id
from nimbus_api.models import AccountEvent, EmailAccount, Enrollment, Message, Suppression
from nimbus_api.sending.outcomes import next_attempt
from nimbus_api.sending.rotation import release
from nimbus_api.smtp.errors import ServerReply, SmtpError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Work:
    message_id: uuid.UUID
    enrollment_id: uuid.UUID
    step: int
    to_email: str
    budget_day: date | None
    raw: bytes | None  # None: not sent (suppressed at send time, or ``failure``)
    failure: str | None = None
    next_delay: timedelta | None = None  # after a send: the next step's delay (jitter included); None: last


@dataclass
class Result:
    item: Work
    outcome: str
    reply: ServerReply | None = None
    error: SmtpError | None = None


RECORD_SQL = text(
    """
WITH sent AS (
    UPDATE messages m
    SET state = 'sent', sent_at = :now, reply_code = r.code, reply_enhanced = r.enhanced, reply_text = r.reply_text,
        error_code = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:codes AS int[]), CAST(:enhanced AS varchar[]), CAST(:texts AS text[]),
                CAST(:next_send_at AS timestamptz[])) AS r(id, code, enhanced, reply_text, next_at)
    WHERE m.id = r.id
    RETURNING m.enrollment_id, m.step, r.next_at, m.to_email
), prior AS (
    SELECT e.id, e.status FROM enrollments e WHERE e.id IN (SELECT enrollment_id FROM sent)
), advanced AS (
    UPDATE enrollments e
    SET next_step = s.step + 1,
        status = CASE WHEN e.status = 'active' AND s.next_at IS NULL THEN 'completed' ELSE e.status END,
        next_send_at = CASE WHEN e.status = 'active' THEN s.next_at END,
        updated_at = :now
    FROM sent s
    WHERE e.id = s.enrollment_id
    RETURNING e.id, e.status, e.campaign_id, e.contact_id, s.to_email
)
SELECT a.id, a.campaign_id, a.contact_id, a.to_email
FROM advanced a JOIN prior p ON p.id = a.id
WHERE p.status = 'active' AND a.status = 'completed'
"""
)
"""A chunk's ``sent`` messages in one statement, each with its reply, and their enrollments moved to the
next step at the time given per message (or completed: those are returned, for their events; ``prior``
reads the statuses before the update, as every part of one statement sees the same snapshot). The other
outcomes follow one by one
(``record_one``), after their attempt rows (``ATTEMPTS_SQL``)."""

ATTEMPTS_SQL = text(
    """
INSERT INTO send_attempts (id, message_id, account_id, outcome, reply_code, reply_enhanced, reply_text, error_code,
                           started_at, finished_at)
SELECT a.id, a.message_id, :account_id, a.outcome, a.code, a.enhanced, a.reply_text, a.error_code, :started, :now
FROM unnest(CAST(:ids AS uuid[]), CAST(:message_ids AS uuid[]), CAST(:outcomes AS varchar[]), CAST(:codes AS int[]),
            CAST(:enhanced AS varchar[]), CAST(:texts AS text[]), CAST(:errors AS varchar[]))
     AS a(id, message_id, outcome, code, enhanced, reply_text, error_code)
"""
)
"""The attempts that did not deliver (``models.message``: the delivering attempt is the message row)."""


@dataclass
class Chunk:
    """What one lane did with a leased chunk: the outcomes, and what never reached the wire."""

    started: datetime
    results: list[Result]
    unsent: list[Work]


async def record_chunk(
    session: AsyncSession, worker_id: str, account: EmailAccount, chunk: Chunk, *, min_sample: int = 20
) -> None:
    """Every outcome of a chunk: the ``sent`` ones in bulk, the others with an attempt row each;
    messages that never reached the wire are given back as ``queued``, their attempt not counted."""
    now = datetime.now(UTC)
    results, unsent = chunk.results, chunk.unsent
    sent = [r for r in results if r.outcome == "sent"]
    if sent:
        completed = await session.execute(
            RECORD_SQL,
            _reply_columns([r.reply for r in sent])
            | {
                "now": now,
                "ids": [r.item.message_id for r in sent],
                "next_send_at": [now + r.item.next_delay if r.item.next_delay is not None else None for r in sent],
            },
        )
        finished = [
            EnrollmentCompletedData(enrollment_id=e, campaign_id=c, contact_id=p, email=m)
            for e, c, p, m in completed.all()
        ]
        if finished:
            events.emit_many(session, account.workspace_id, "enrollment.completed", finished)
    undelivered = [r for r in results if r.outcome not in ("sent", "suppressed", "rendering_failed")]
    if undelivered:
        await session.execute(ATTEMPTS_SQL, _attempt_rows(undelivered, account.id, chunk.started, now))
    for result in results:
        if result.outcome != "sent":
            await record_one(session, account, result, now, min_sample=min_sample)
    if unsent:
        await give_back(session, worker_id, [item.message_id for item in unsent])


async def give_back(session: AsyncSession, worker_id: str, message_ids: list[uuid.UUID]) -> None:
    await session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.lease_owner == worker_id, Message.state == "leased")
        .values(state="queued", lease_owner=None, lease_expires_at=None, attempts=Message.attempts - 1)
    )


def _reply_columns(replies: Sequence[ServerReply | None]) -> dict[str, list[Any]]:
    """The replies as the array parameters ``codes``, ``enhanced`` and ``texts``."""
    return {
        "codes": [x.code if x else None for x in replies],
        "enhanced": [x.enhanced if x else None for x in replies],
        "texts": [x.text if x else None for x in replies],
    }


def _attempt_rows(results: list[Result], account_id: uuid.UUID, started: datetime, now: datetime) -> dict[str, Any]:
    return _reply_columns([r.reply or (r.error.reply if r.error else None) for r in results]) | {
        "account_id": account_id,
        "started": started,
        "now": now,
        "ids": [new_id() for _ in results],
        "message_ids": [r.item.message_id for r in results],
        "outcomes": [r.outcome for r in results],
        "errors": [r.error.code if r.error else None for r in results],
    }


async def record_one(
    session: AsyncSession, account: EmailAccount, result: Result, now: datetime, *, min_sample: int = 20
) -> None:
    """An outcome other than ``sent`` (the rare path: one message at a time). A 5xx refusal counts as a
    permanent bounce: toward the account's 7-day rate and the campaign's bounce guard (``min_sample``)."""
    item, outcome, error = result.item, result.outcome, result.error
    shown = result.reply or (error.reply if error else None)
    message = await session.get_one(Message, item.message_id, with_for_update=True)
    enrollment = await session.get_one(Enrollment, item.enrollment_id, with_for_update=True)
    if shown:
        message.reply_code, message.reply_enhanced, message.reply_text = shown.code, shown.enhanced, shown.text
    message.error_code = error.code if error else None
    message.lease_owner = message.lease_expires_at = None

    async def give_back_budget() -> None:
        if message.budget_day is not None:
            await release(session, account.id, first_step=message.step == 0, day=message.budget_day)
            message.budget_day = None

    if outcome in ("suppressed", "rendering_failed"):
        message.attempts = max(0, message.attempts - 1)  # leased, but never on the wire
    if outcome == "suppressed":
        message.state = "suppressed"
        if enrollment.status == "active":
            enrollment.status, enrollment.stop_reason = "stopped", "suppressed"
        await give_back_budget()
    elif outcome == "transient":
        retry_at = next_attempt(message.attempts, now, message.created_at)
        if retry_at is None:
            message.state = "expired"
            enrollment.status, enrollment.stop_reason = "failed", "expired after retries"
        else:
            message.state, message.retry_at = "deferred", retry_at
            if message.budget_day is not None and utc_day(retry_at) != message.budget_day:
                # The retry is a send of its own day: that day's budget is reserved when it is leased.
                await give_back_budget()
    elif outcome == "unknown":
        message.state = "unknown"
        enrollment.status, enrollment.stop_reason = "failed", "delivery unknown"
    elif outcome == "hard_bounce":
        message.state = "failed"
        newly_bounced = enrollment.status != "bounced"
        enrollment.status, enrollment.stop_reason = "bounced", "hard bounce"
        suppression_id = await session.scalar(
            insert(Suppression)
            .values(
                id=new_id(),
                workspace_id=message.workspace_id,
                email=message.to_email.lower(),
                reason="hard_bounce",
                detail=(shown.text[:500] if shown else None),
            )
            .on_conflict_do_nothing()
            .returning(Suppression.id)
        )
        _emit_hard_bounce(session, message, enrollment, shown, suppression_id, newly_bounced=newly_bounced)
    elif outcome == "rendering_failed":
        message.state, message.error_code = "failed", "template"
        enrollment.status, enrollment.stop_reason = "failed", (item.failure or "template")[:200]
        await give_back_budget()
    elif outcome == "failed":
        message.state = "failed"
        enrollment.status, enrollment.stop_reason = "failed", error.code if error else "failed"
    elif outcome == "credential":
        # Not sent and not the recipient's doing: handed back with the inbox's other queued messages
        # (the attempt stays on record, but does not count as one of the message's tries).
        message.state = "queued"
        message.attempts = max(0, message.attempts - 1)
    if message.state == "failed" and message.reply_code is not None and message.reply_code >= 500:
        await rates.count(session, account.id, "bounces", now)
        await health.request(session, [account.id])
        await session.flush()
        await bounce_guard.check(session, message.campaign_id, account.id, min_sample=min_sample, now=now)


def _emit_hard_bounce(
    session: AsyncSession,
    message: Message,
    enrollment: Enrollment,
    reply: ServerReply | None,
    suppression_id: uuid.UUID | None,
    *,
    newly_bounced: bool,
) -> None:
    """``enrollment.bounced`` (5.1.x: the address does not exist), and ``contact.suppressed`` when the
    bounce put the address on the list (it was not on it already)."""
    if newly_bounced:
        events.emit(
            session,
            message.workspace_id,
            "enrollment.bounced",
            EnrollmentBouncedData(
                enrollment_id=enrollment.id,
                campaign_id=enrollment.campaign_id,
                contact_id=enrollment.contact_id,
                email=message.to_email,
                reason="hard_bounce",
                message_id=message.id,
                smtp_code=reply.code if reply else None,
                enhanced_code=reply.enhanced if reply else None,
                server_text=reply.text[:500] if reply and reply.text else None,
            ),
        )
    if suppression_id is not None:
        events.emit(
            session,
            message.workspace_id,
            "contact.suppressed",
            ContactSuppressedData(suppression_id=suppression_id, email=message.to_email.lower(), reason="hard_bounce"),
        )


MAX_HANDOFFS = 1
"""How often one send may be handed to another inbox after its send paused one: a send that pauses a
second inbox fails instead (a recipient no inbox can reach must not pause the pool one by one)."""


@dataclass
class PauseReport:
    handed_back: int = 0
    failed: list[uuid.UUID] = field(default_factory=list)


async def pause_inbox(
    sessionmaker: async_sessionmaker[AsyncSession],
    account_id: uuid.UUID,
    error: SmtpError,
    culprits: Sequence[Work] = (),
) -> PauseReport:
    """A failure that cannot be about the recipient (login, TLS, the sender address, relay refused for
    every recipient): pause the inbox, say why in an account event, and give its unsent step-1 messages
    to other inboxes of their pools.

    ``culprits`` are the messages whose sends met the failure: each is handed over at most
    ``MAX_HANDOFFS`` times (counted on its enrollment), then fails with the reason. Follow-ups stay: they
    must go through this inbox (the thread), so they wait for a person to fix it.
    """
    now = datetime.now(UTC)
    report = PauseReport()
    async with sessionmaker() as session, session.begin():
        account = await session.get_one(EmailAccount, account_id, with_for_update=True)
        first_pause = account.disabled_at is None
        if first_pause:
            account.disabled_at, account.disabled_reason = now, error.code
        await health.request(session, [account_id])  # a refused login (or TLS, sender, relay) moves the health
        await session.execute(
            update(Message)
            .where(Message.account_id == account_id, Message.state == "leased")
            .values(state="queued", lease_owner=None, lease_expires_at=None)
        )
        for item in culprits:
            message = await session.get(Message, item.message_id, with_for_update=True)
            if message is None or message.account_id != account_id or message.state not in ("queued", "deferred"):
                continue
            enrollment = await session.get_one(Enrollment, message.enrollment_id, with_for_update=True)
            if message.step == 0 and enrollment.inbox_handoffs < MAX_HANDOFFS:
                enrollment.inbox_handoffs += 1
                continue  # handed over below, with the inbox's other step-1 messages
            if enrollment.inbox_handoffs >= MAX_HANDOFFS:
                message.state, message.error_code = "failed", error.code
                if enrollment.status == "active":
                    enrollment.status = "failed"
                    enrollment.stop_reason = f"paused {enrollment.inbox_handoffs + 1} inboxes: {error.code}"[:200]
                if message.budget_day is not None:
                    await release(session, account_id, first_step=message.step == 0, day=message.budget_day)
                    message.budget_day = None
                report.failed.append(message.id)
        await session.flush()  # the failed culprits are not handed back below
        firsts = list(
            await session.scalars(
                select(Message).where(
                    Message.account_id == account_id,
                    Message.step == 0,
                    Message.state.in_(("queued", "deferred")),
                )
            )
        )
        for message in firsts:
            enrollment = await session.get_one(Enrollment, message.enrollment_id)
            if enrollment.status == "active":
                enrollment.account_id, enrollment.next_send_at, enrollment.defer_reason = None, now, None
            if message.budget_day is not None:
                await release(session, account_id, first_step=True, day=message.budget_day)
            await session.delete(message)
        report.handed_back = len(firsts)
        if first_pause:  # a run that lost a race with another one's pause adds nothing
            session.add(_pause_event(account, error, culprits[0] if culprits else None, report))
            events.emit(
                session,
                account.workspace_id,
                "account.disabled",
                AccountDisabledData(account_id=account.id, email=account.email, reason=error.code, by="sender"),
            )
    log.warning(
        "inbox_paused",
        account_id=str(account_id),
        reason=error.code,
        handed_back=report.handed_back,
        failed=len(report.failed),
    )
    return report


def _pause_event(account: EmailAccount, error: SmtpError, culprit: Work | None, report: PauseReport) -> AccountEvent:
    """The account event ``paused``: why, and which send met it (shown by the account's events route)."""
    reply = error.reply
    return AccountEvent(
        workspace_id=account.workspace_id,
        account_id=account.id,
        kind="paused",
        actor="system:sender",
        detail={
            "reason": error.code,
            "stage": error.stage,
            "detail": error.detail,
            "server_reply": {"code": reply.code, "enhanced": reply.enhanced, "text": reply.text} if reply else None,
            "message_id": str(culprit.message_id) if culprit else None,
            "recipient": culprit.to_email if culprit else None,
            "handed_back": report.handed_back,
            "failed": [str(m) for m in report.failed],
        },
    )
