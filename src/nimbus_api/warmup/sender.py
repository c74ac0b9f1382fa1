"""Sending the due warmup messages, at most once each (the states are in the package docstring).

1. ``claim`` (committed before anything is on the wire): due ``planned`` rows -> ``sending``, with this
   worker as the lease owner, the lease's expiry and the attempt counted; rows whose inbox left the exchange
   or is paused become ``skipped`` instead. ``SKIP LOCKED``: two workers never claim the same row.
2. The message goes out through the sending inbox's own SMTP server (``smtp.send_test_message``: one
   connection, one transaction, QUIT), its password decrypted through the vault (audited, purpose ``warmup``).
3. ``record``: the outcome, only if this worker still holds the lease (``state = 'sending' AND lease_owner``).
   ``sent`` counts (``counting.count_sent``); a temporary refusal goes back to ``planned`` later, until
   ``NIMBUS_WARMUP_MAX_ATTEMPTS``; anything else, or an outcome that cannot be known (the connection lost at
   the final dot), is final.

``expire`` turns a ``sending`` row whose lease ran out (the worker died between 1 and 3) into ``unknown``,
never back into ``planned``: it may have been delivered, and a warmup message is never sent twice. When
the recipient's sync has already seen it, it is ``sent`` instead (evidence beats a guess).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.models import EmailAccount, WarmupMessage
from nimbus_api.oauth.sources import LoginUnavailable, auth_kind, login_secret
from nimbus_api.sending.outcomes import classify
from nimbus_api.smtp import SmtpError, SmtpServer, send_test_message
from nimbus_api.stages.stages import RateThresholds
from nimbus_api.warmup import mail
from nimbus_api.warmup.counting import count_sent
from nimbus_api.warmup.marker import Marker
from nimbus_api.warmup.pause import can_send

log = structlog.get_logger(__name__)
WARMUP_ACTOR = Actor.system("warmup")
CONCURRENCY = 8
RETRY_AFTER = timedelta(minutes=15)


@dataclass
class WarmupDeps:
    sessionmaker: async_sessionmaker[AsyncSession]
    vault: Vault
    net: NetContext
    marker: Marker
    settings: Settings
    owner: str = field(default_factory=lambda: f"warmup-{uuid.uuid4().hex[:10]}")

    @property
    def thresholds(self) -> RateThresholds:
        return self.settings


@dataclass(frozen=True)
class Outcome:
    state: str  # sent | planned | failed | unknown
    reply_code: int | None = None
    error: str | None = None


_EXPIRE = text(
    """
    UPDATE warmup_messages
    SET state = CASE WHEN received_at IS NULL THEN 'unknown' ELSE 'sent' END,
        sent_at = CASE WHEN received_at IS NULL THEN sent_at ELSE COALESCE(sent_at, received_at) END,
        lease_owner = NULL, lease_expires_at = NULL,
        last_error = 'the sending worker stopped before recording the outcome'
    WHERE state = 'sending' AND lease_expires_at < :now
    RETURNING state, sender_id, parent_id
    """
)


async def expire(session: AsyncSession, now: datetime) -> int:
    """``sending`` rows whose lease ran out -> ``unknown`` (or ``sent`` when already received). Flushes only."""
    rows = (await session.execute(_EXPIRE, {"now": now})).all()
    await count_sent(session, [(r.sender_id, r.parent_id) for r in rows if r.state == "sent"])
    return len(rows)


async def claim(
    session: AsyncSession, owner: str, now: datetime, *, lease_seconds: int, thresholds: RateThresholds, limit: int
) -> list[uuid.UUID]:
    """Due ``planned`` rows -> ``sending`` (leased to ``owner``), or ``skipped``; the caller commits at once."""
    due = list(
        await session.scalars(
            select(WarmupMessage)
            .where(WarmupMessage.state == "planned", WarmupMessage.send_at <= now)
            .order_by(WarmupMessage.send_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not due:
        return []
    senders = {
        a.id: a
        for a in await session.scalars(select(EmailAccount).where(EmailAccount.id.in_({r.sender_id for r in due})))
    }
    claimed: list[uuid.UUID] = []
    for row in due:
        account = senders.get(row.sender_id)
        if account is None or not can_send(account, thresholds, now):
            row.state = "skipped"
            row.last_error = "the inbox left the warmup exchange or its warmup is paused"
            continue
        row.state = "sending"
        row.lease_owner = owner
        row.lease_expires_at = now + timedelta(seconds=lease_seconds)
        row.attempts += 1
        claimed.append(row.id)
    await session.flush()
    return claimed


_RECORD = text(
    """
    UPDATE warmup_messages
    SET state = CAST(:state AS varchar), reply_code = :reply_code, last_error = :error, send_at = :send_at,
        sent_at = CASE WHEN CAST(:state AS varchar) = 'sent' THEN CAST(:now AS timestamptz) ELSE sent_at END,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE id = :id AND state = 'sending' AND lease_owner = :owner
    RETURNING sender_id, parent_id, send_at
    """
)


async def record(session: AsyncSession, row_id: uuid.UUID, owner: str, outcome: Outcome, now: datetime) -> bool:
    """Write the outcome if ``owner`` still holds the row; returns whether it did. Flushes only."""
    current = await session.scalar(select(WarmupMessage.send_at).where(WarmupMessage.id == row_id))
    send_at = now + RETRY_AFTER if outcome.state == "planned" else current
    found = (
        await session.execute(
            _RECORD,
            {
                "id": row_id,
                "owner": owner,
                "state": outcome.state,
                "reply_code": outcome.reply_code,
                "error": (outcome.error or "")[:300] or None,
                "send_at": send_at,
                "now": now,
            },
        )
    ).first()
    if found is None:
        return False
    if outcome.state == "sent":
        await count_sent(session, [(found.sender_id, found.parent_id)])
    return True


def _server(account: EmailAccount, password: object) -> SmtpServer:
    return SmtpServer(
        host=account.smtp_host,
        port=account.smtp_port,
        mode=account.smtp_mode,  # type: ignore[arg-type]
        username=account.smtp_username,
        password=password,  # type: ignore[arg-type]
        allow_plaintext_auth=account.smtp_allow_plaintext_auth,
        auth_mechanism=auth_kind(account),
    )


async def transmit(deps: WarmupDeps, row_id: uuid.UUID) -> Outcome:
    """Step 2 for one claimed row: render and send it; the outcome is not recorded here."""
    async with deps.sessionmaker() as session:
        row = await session.get_one(WarmupMessage, row_id)
        sender = await session.get_one(EmailAccount, row.sender_id)
        recipient = await session.get_one(EmailAccount, row.recipient_id)
        try:
            password = await login_secret(
                session, deps.vault, deps.settings, sender, "smtp_password", actor=WARMUP_ACTOR, purpose="warmup"
            )
        except LoginUnavailable as exc:  # no login tried: a token endpoint outage is tried again later
            await session.commit()  # the audit rows
            retry = not exc.dead and row.attempts < deps.settings.warmup_max_attempts
            return Outcome("planned" if retry else "failed", None, str(exc))
        await session.commit()  # the audit row
    now = utcnow()
    raw = mail.render(row, sender, recipient, deps.marker, now)
    try:
        result = await send_test_message(
            _server(sender, password), deps.net, sender=sender.email, recipient=recipient.email, message=raw
        )
    except SmtpError as exc:
        verdict = classify(exc.code, exc.stage, exc.reply.enhanced if exc.reply else None)
        error = f"{exc.code}: {exc.detail}"
        code = exc.reply.code if exc.reply else None
        if verdict == "unknown":
            return Outcome("unknown", code, error)
        if verdict == "transient" and row.attempts < deps.settings.warmup_max_attempts:
            return Outcome("planned", code, error)
        return Outcome("failed", code, error)
    finally:
        del password
    return Outcome("sent", result.reply.code)


async def _send_one(deps: WarmupDeps, row_id: uuid.UUID) -> str:
    try:
        outcome = await transmit(deps, row_id)
    except Exception:
        log.exception("warmup_send_crashed", warmup_id=str(row_id))
        outcome = Outcome("unknown", None, "internal error while sending")
    async with deps.sessionmaker() as session:
        await record(session, row_id, deps.owner, outcome, utcnow())
        await session.commit()
    return outcome.state


async def send_due(deps: WarmupDeps, *, now: datetime | None = None, limit: int = 50) -> Counter[str]:
    """Expire lost leases, claim what is due, send it (a few at once), record each outcome."""
    now = now or utcnow()
    async with deps.sessionmaker() as session:
        await expire(session, now)
        claimed = await claim(
            session,
            deps.owner,
            now,
            lease_seconds=deps.settings.warmup_lease_seconds,
            thresholds=deps.thresholds,
            limit=limit,
        )
        await session.commit()
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(row_id: uuid.UUID) -> str:
        async with slots:
            return await _send_one(deps, row_id)

    return Counter(await asyncio.gather(*(one(i) for i in claimed)))
