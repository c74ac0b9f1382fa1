"""The per-inbox sender: lease the inbox's due messages, send them over pooled, paced connections, and
record what happened to each (``models.message`` has the state machine).

Crash safety, per message:

1. lease (committed): ``queued``/due ``deferred`` -> ``leased`` with a lease expiry, in batches;
2. an attempt row is committed *before* the SMTP transaction starts;
3. the outcome is committed with the attempt's end.

A worker killed between 2 and 3 leaves a leased message with an unfinished attempt: the sweeper marks it
``unknown`` (it may have been delivered) and never requeues it. A leased message without an attempt was
never on the wire: the sweeper requeues it. So a crash loses nothing and duplicates only what it records
as ``unknown``.

The inbox's password is decrypted once per run (audited, purpose ``send``) and never leaves this process.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.campaigns.templates import TemplateProblem, render_step
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utc_day
from nimbus_api.kit.ids import new_id
from nimbus_api.models import (
    Campaign,
    CampaignStep,
    Contact,
    EmailAccount,
    Enrollment,
    Message,
    SendAttempt,
    Suppression,
)
from nimbus_api.sending import mime
from nimbus_api.sending.dispatcher import unsubscribe_links
from nimbus_api.sending.outcomes import Outcome, classify, next_attempt
from nimbus_api.sending.rotation import release
from nimbus_api.smtp.client import SmtpServer
from nimbus_api.smtp.errors import ServerReply, SmtpError
from nimbus_api.smtp.pacing import Pacer
from nimbus_api.smtp.pool import PoolKey, SmtpPool

log = structlog.get_logger(__name__)
SENDER_ACTOR = Actor.system("sender")


@dataclass
class SenderDeps:
    sessionmaker: async_sessionmaker[AsyncSession]
    vault: Vault
    pool: SmtpPool
    pacer: Pacer | None
    public_url: str
    worker_id: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:8]}")
    lease_seconds: int = 300
    batch: int = 100


@dataclass
class SendReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    stopped_reason: str | None = None


@dataclass(frozen=True)
class _Work:
    message_id: uuid.UUID
    enrollment_id: uuid.UUID
    step: int
    to_email: str
    to_name: str | None
    raw: bytes | None  # None: not sent (suppressed at send time, or ``failure``)
    failure: str | None = None


async def lease(
    session: AsyncSession, account_id: uuid.UUID, *, owner: str, now: datetime, limit: int, lease_seconds: int
) -> list[uuid.UUID]:
    due = (
        select(Message.id)
        .where(
            Message.account_id == account_id,
            or_(Message.state == "queued", and_(Message.state == "deferred", Message.retry_at <= now)),
        )
        .order_by(Message.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.scalars(
        update(Message)
        .where(Message.id.in_(due))
        .values(state="leased", lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(Message.id)
    )
    return list(rows)


async def _prepare(session: AsyncSession, ids: list[uuid.UUID], account: EmailAccount, public_url: str) -> list[_Work]:
    rows = (
        await session.execute(
            select(Message, Enrollment, Contact, CampaignStep)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .join(Contact, Contact.id == Message.contact_id)
            .join(
                CampaignStep,
                and_(CampaignStep.campaign_id == Message.campaign_id, CampaignStep.position == Message.step),
            )
            .where(Message.id.in_(ids))
            .order_by(Message.created_at)
        )
    ).all()
    suppressed = set(
        await session.scalars(
            select(func.lower(Suppression.email)).where(
                Suppression.workspace_id == account.workspace_id,
                func.lower(Suppression.email).in_([c.email.lower() for _, _, c, _ in rows]),
            )
        )
    )
    work: list[_Work] = []
    for message, enrollment, contact, step in rows:
        if enrollment.status != "active" or contact.email.lower() in suppressed:
            work.append(_Work(message.id, enrollment.id, message.step, contact.email, None, None))
            continue
        url, mailto = unsubscribe_links(public_url, account.email, enrollment.unsubscribe_token)
        try:
            rendered = render_step(step, contact, url)
        except TemplateProblem as exc:
            work.append(_Work(message.id, enrollment.id, message.step, contact.email, None, None, f"template: {exc}"))
            continue
        mail = mime.OutgoingMail(
            from_email=account.email,
            from_name=account.from_name,
            to_email=contact.email,
            to_name=" ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
            reply_to=account.reply_to,
            subject=message.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=message.message_id_header,
            in_reply_to=message.in_reply_to,
            references=(message.in_reply_to,) if message.in_reply_to else (),
            unsubscribe_url=url,
            unsubscribe_mailto=mailto,
        )
        name = mail.to_name
        work.append(
            _Work(message.id, enrollment.id, message.step, contact.email, name, mime.to_bytes(mime.build(mail)))
        )
    return work


async def run_inbox(deps: SenderDeps, account_id: uuid.UUID, *, max_seconds: float = 60.0) -> SendReport:
    """Send the inbox's due messages until none are left or ``max_seconds`` have passed."""
    report = SendReport()
    async with deps.sessionmaker() as session, session.begin():
        account = await session.get(EmailAccount, account_id)
        if account is None or not account.is_active or account.disabled_at is not None:
            report.stopped_reason = "inbox not sending"
            return report
        password = await deps.vault.reveal_for_account(
            session, account.id, "smtp_password", actor=SENDER_ACTOR, purpose="send"
        )
    server = _server(account, password)
    key = PoolKey(str(account.id), account.credentials_version)
    lanes = max(1, account.max_connections)
    deadline = time.monotonic() + max_seconds
    credential_failure: list[SmtpError] = []
    while time.monotonic() < deadline and not credential_failure:
        now = datetime.now(UTC)
        async with deps.sessionmaker() as session, session.begin():
            ids = await lease(
                session, account.id, owner=deps.worker_id, now=now, limit=deps.batch, lease_seconds=deps.lease_seconds
            )
            work = await _prepare(session, ids, account, deps.public_url) if ids else []
        if not work:
            break
        queue: asyncio.Queue[_Work] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)

        async def lane(queue: asyncio.Queue[_Work]) -> None:
            if deps.pacer is None:
                await _drain(deps, account, server, key, lanes, queue, None, report, credential_failure)
                return
            async with deps.pacer.slot(str(account.id), lanes) as slot:
                await _drain(deps, account, server, key, lanes, queue, slot.wait_turn, report, credential_failure)

        await asyncio.gather(*(lane(queue) for _ in range(min(lanes, len(work)))))
        if credential_failure:
            await _hand_back(deps, account.id, credential_failure[0])
            report.stopped_reason = credential_failure[0].code
    return report


def _server(account: EmailAccount, password: Secret | None) -> SmtpServer:
    return SmtpServer(
        host=account.smtp_host,
        port=account.smtp_port,
        mode=account.smtp_mode,  # type: ignore[arg-type]
        username=account.smtp_username,
        password=password,
        allow_plaintext_auth=account.smtp_allow_plaintext_auth,
    )


async def _drain(
    deps: SenderDeps,
    account: EmailAccount,
    server: SmtpServer,
    key: PoolKey,
    lanes: int,
    queue: asyncio.Queue[_Work],
    wait_turn: Callable[[], Awaitable[float]] | None,
    report: SendReport,
    credential_failure: list[SmtpError],
) -> None:
    while not queue.empty() and not credential_failure:
        item = queue.get_nowait()
        if item.raw is None:
            skipped = "rendering_failed" if item.failure else "suppressed"
            await _record(deps, account, item, skipped, None, None)
            report.outcomes[skipped] += 1
            continue
        attempt_id = await _start_attempt(deps, item, account.id)
        if attempt_id is None:
            report.outcomes["lease_lost"] += 1
            continue
        reply: ServerReply | None = None
        error: SmtpError | None = None
        try:
            async with deps.pool.connection(key, server, max_connections=lanes) as conn:
                if wait_turn is not None:
                    await wait_turn()
                reply = await conn.transmit(sender=account.email, recipients=[item.to_email], message=item.raw)
        except SmtpError as exc:
            error = exc
        outcome: Outcome | str = "sent" if error is None else classify(error.code, error.stage, _enhanced(error))
        if outcome == "credential":
            assert error is not None
            credential_failure.append(error)
        await _record(deps, account, item, outcome, reply, error, attempt_id=attempt_id)
        report.outcomes[str(outcome)] += 1


def _enhanced(error: SmtpError) -> str | None:
    return error.reply.enhanced if error.reply else None


async def _start_attempt(deps: SenderDeps, item: _Work, account_id: uuid.UUID) -> uuid.UUID | None:
    """Commit the attempt before any SMTP traffic, if the lease is still ours and unexpired (the database's
    clock decides). None: the sweeper has taken the message back; it must not be sent from here."""
    async with deps.sessionmaker() as session, session.begin():
        still_ours = await session.scalar(
            update(Message)
            .where(
                Message.id == item.message_id,
                Message.state == "leased",
                Message.lease_owner == deps.worker_id,
                Message.lease_expires_at > func.now(),
            )
            .values(attempts=Message.attempts + 1)
            .returning(Message.id)
        )
        if still_ours is None:
            return None
        attempt_id = new_id()
        session.add(SendAttempt(id=attempt_id, message_id=item.message_id, account_id=account_id, outcome="started"))
    return attempt_id


async def _record(
    deps: SenderDeps,
    account: EmailAccount,
    item: _Work,
    outcome: str,
    reply: ServerReply | None,
    error: SmtpError | None,
    *,
    attempt_id: uuid.UUID | None = None,
) -> None:
    now = datetime.now(UTC)
    shown = reply or (error.reply if error else None)
    async with deps.sessionmaker() as session, session.begin():
        message = await session.get_one(Message, item.message_id, with_for_update=True)
        enrollment = await session.get_one(Enrollment, item.enrollment_id, with_for_update=True)
        if attempt_id is not None:
            await session.execute(
                update(SendAttempt)
                .where(SendAttempt.id == attempt_id)
                .values(
                    outcome=outcome,
                    finished_at=now,
                    reply_code=shown.code if shown else None,
                    reply_enhanced=shown.enhanced if shown else None,
                    reply_text=shown.text if shown else None,
                    error_code=error.code if error else None,
                )
            )
        if shown:
            message.reply_code, message.reply_enhanced, message.reply_text = shown.code, shown.enhanced, shown.text
        message.error_code = error.code if error else None
        message.lease_owner = message.lease_expires_at = None
        if outcome == "sent":
            message.state, message.sent_at = "sent", now
            await _advance(session, enrollment, message.campaign_id, now)
        elif outcome == "suppressed":
            message.state = "suppressed"
            if enrollment.status == "active":
                enrollment.status, enrollment.stop_reason = "stopped", "suppressed"
            await release(session, account.id, first_step=message.step == 0, day=utc_day(message.created_at))
        elif outcome == "transient":
            retry_at = next_attempt(message.attempts, now, message.created_at)
            if retry_at is None:
                message.state = "expired"
                enrollment.status, enrollment.stop_reason = "failed", "expired after retries"
            else:
                message.state, message.retry_at = "deferred", retry_at
        elif outcome == "unknown":
            message.state = "unknown"
            enrollment.status, enrollment.stop_reason = "failed", "delivery unknown"
        elif outcome == "hard_bounce":
            message.state = "failed"
            enrollment.status, enrollment.stop_reason = "bounced", "hard bounce"
            await session.execute(
                insert(Suppression)
                .values(
                    id=new_id(),
                    workspace_id=message.workspace_id,
                    email=message.to_email.lower(),
                    reason="hard_bounce",
                    detail=(shown.text[:500] if shown else None),
                )
                .on_conflict_do_nothing()
            )
        elif outcome == "rendering_failed":
            message.state, message.error_code = "failed", "template"
            enrollment.status, enrollment.stop_reason = "failed", (item.failure or "template")[:200]
        elif outcome == "failed":
            message.state = "failed"
            enrollment.status, enrollment.stop_reason = "failed", error.code if error else "failed"
        elif outcome == "credential":
            message.state = "queued"  # not sent; handed back with the inbox's other queued messages
            message.attempts = max(0, message.attempts - 1)


async def _advance(session: AsyncSession, enrollment: Enrollment, campaign_id: uuid.UUID, sent_at: datetime) -> None:
    """After a sent step: schedule the next one (its delay, plus the campaign's jitter) or complete."""
    enrollment.next_step += 1
    step = await session.scalar(
        select(CampaignStep).where(
            CampaignStep.campaign_id == campaign_id, CampaignStep.position == enrollment.next_step
        )
    )
    if step is None:
        enrollment.status, enrollment.next_send_at = "completed", None
        return
    campaign = await session.get_one(Campaign, campaign_id)
    jitter = 0
    if campaign.randomize_delay_min_seconds is not None and campaign.randomize_delay_max_seconds is not None:
        jitter = random.randint(campaign.randomize_delay_min_seconds, campaign.randomize_delay_max_seconds)  # noqa: S311
    enrollment.next_send_at = sent_at + timedelta(seconds=step.delay_seconds + jitter)


async def _hand_back(deps: SenderDeps, account_id: uuid.UUID, error: SmtpError) -> None:
    """Credential-level failure: pause the inbox and give its unsent step-1 messages to other inboxes.

    Follow-ups stay: they must go through this inbox, so they wait for a person to fix it.
    """
    now = datetime.now(UTC)
    async with deps.sessionmaker() as session, session.begin():
        account = await session.get_one(EmailAccount, account_id, with_for_update=True)
        account.disabled_at, account.disabled_reason = now, error.code
        firsts = list(
            await session.scalars(
                select(Message).where(
                    Message.account_id == account_id,
                    Message.step == 0,
                    Message.state.in_(("queued", "leased", "deferred")),
                    Message.attempts == 0,
                )
            )
        )
        for message in firsts:
            enrollment = await session.get_one(Enrollment, message.enrollment_id)
            enrollment.account_id, enrollment.next_send_at = None, now
            await release(session, account_id, first_step=True, day=utc_day(message.created_at))
            await session.delete(message)
        await session.execute(
            update(Message)
            .where(Message.account_id == account_id, Message.state == "leased")
            .values(state="queued", lease_owner=None, lease_expires_at=None)
        )
    log.warning("inbox_paused", account_id=str(account_id), reason=error.code, handed_back=len(firsts))
