"""The per-inbox sender: each connection (a "lane") leases a chunk of the inbox's due messages, sends
them, and records what happened to each (``models.message`` has the state machine).

Crash safety, per chunk of at most ``commit_every`` messages of one lane:

1. lease (committed before anything is on the wire): due messages (``queued``, or ``deferred`` past
   ``retry_at``) -> ``leased``, with the lease expiry and the attempt counted (a ``leased`` message is
   one whose attempt has begun); a retry moved to a later day first reserves a send of today's budget
   (``budget_day``), or waits for the next day;
2. the chunk is rendered and sent on the lane's connection (no RSET between messages that went through);
3. every outcome is committed in one transaction: the ``sent`` ones in bulk (the common case; the
   message row keeps the reply), the others with an attempt row each.

A worker killed between 1 and 3 leaves leased messages whose lease expires: the sweeper marks them
``unknown`` (each may have been delivered) and never requeues them. So a crash loses nothing and
duplicates only what it records as ``unknown``; the price of committing per chunk instead of per message
is that up to ``commit_every`` messages per lane that were not yet sent are recorded ``unknown`` too. An
error that is not an SMTP outcome (Redis down for the pacer, a pool timeout) records what was sent and
gives the unsent rest of the chunk back at once. With pacing on, a chunk is at most one second of sends.

The inbox's password is decrypted (audited, purpose ``send``) only when a run opens a connection, at most once
per run (``_PasswordOnDemand``), and never leaves this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.campaigns.templates import TemplateProblem, render_body
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utc_day
from nimbus_api.kit.ids import new_id
from nimbus_api.models import (
    AccountDailyUsage,
    EmailAccount,
    Enrollment,
    Message,
    Suppression,
)
from nimbus_api.sending import mime
from nimbus_api.sending.dispatcher import unsubscribe_links, utc_midnight_after
from nimbus_api.sending.outcomes import Outcome, classify, next_attempt
from nimbus_api.sending.rotation import release
from nimbus_api.smtp.client import Outgoing, SmtpServer
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
    commit_every: int = 25


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
    budget_day: date | None
    raw: bytes | None  # None: not sent (suppressed at send time, or ``failure``)
    failure: str | None = None
    next_delay: timedelta | None = None  # after a send: the next step's delay (jitter included); None: last


@dataclass
class _Result:
    item: _Work
    outcome: str
    reply: ServerReply | None = None
    error: SmtpError | None = None


LEASE_SQL = text(
    """
WITH due AS (
    SELECT id FROM messages
    WHERE account_id = :account_id AND budget_day IS NOT NULL
      AND (state = 'queued' OR (state = 'deferred' AND retry_at <= :now))
    ORDER BY created_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE messages m
    SET state = 'leased', lease_owner = :owner, lease_expires_at = :expires, attempts = m.attempts + 1
    FROM due WHERE m.id = due.id
    RETURNING m.id, m.enrollment_id, m.campaign_id, m.contact_id, m.step, m.subject, m.message_id_header,
              m.in_reply_to, m.budget_day, m.created_at
)
SELECT l.id, l.enrollment_id, l.campaign_id, l.step, l.subject, l.message_id_header, l.in_reply_to, l.budget_day,
       e.status, e.unsubscribe_token, c.email, c.first_name, c.last_name, c.company, c.fields,
       s.id AS step_id, nxt.delay_seconds AS next_delay,
       cp.randomize_delay_min_seconds AS jitter_min, cp.randomize_delay_max_seconds AS jitter_max,
       EXISTS (SELECT 1 FROM suppressions sp
               WHERE sp.workspace_id = c.workspace_id AND lower(sp.email) = lower(c.email)) AS suppressed
FROM leased l
JOIN enrollments e ON e.id = l.enrollment_id
JOIN contacts c ON c.id = l.contact_id
JOIN campaigns cp ON cp.id = l.campaign_id
LEFT JOIN campaign_steps s ON s.campaign_id = l.campaign_id AND s.position = l.step
LEFT JOIN campaign_steps nxt ON nxt.campaign_id = l.campaign_id AND nxt.position = l.step + 1
ORDER BY l.created_at
"""
)
"""Lease and read a chunk in one statement: the due messages (holding a budget) become ``leased`` with
their attempt counted, and come back with what rendering and recording need. The step comes as its id:
its templates (an HTML one can be tens of kilobytes) are read once per process (``_step_templates``),
not with every message."""


class LeasedRow(NamedTuple):
    """A row of ``LEASE_SQL``, in its column order (checked at every lease). A plain tuple: rendering
    and recording read some thirty fields per message, and each read of an SQLAlchemy ``Row`` attribute
    costs about 0.7 µs, a tuple's a few dozen nanoseconds."""

    id: uuid.UUID
    enrollment_id: uuid.UUID
    campaign_id: uuid.UUID
    step: int
    subject: str
    message_id_header: str
    in_reply_to: str | None
    budget_day: date | None
    status: str
    unsubscribe_token: str
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    fields: dict[str, Any]
    step_id: uuid.UUID | None
    next_delay: int | None
    jitter_min: int | None
    jitter_max: int | None
    suppressed: bool


async def _lease_rows(session: AsyncSession, values: dict[str, Any]) -> list[LeasedRow]:
    result = await session.execute(LEASE_SQL, values)
    if tuple(result.keys()) != LeasedRow._fields:
        raise RuntimeError(f"LEASE_SQL returns {tuple(result.keys())}, LeasedRow expects {LeasedRow._fields}")
    return [LeasedRow._make(row) for row in result]


STEP_TEMPLATES_SQL = text(
    """
SELECT id, subject_template, text_template, html_template FROM campaign_steps WHERE id = ANY(CAST(:ids AS uuid[]))
"""
)


@dataclass(frozen=True)
class _StepTemplates:
    subject_template: str
    text_template: str
    html_template: str | None


_STEPS: dict[uuid.UUID, _StepTemplates] = {}
"""Templates by step id, for this process. A step row never changes: a campaign's steps are replaced as a
whole (new ids) when edited, so an entry is never stale; a deleted step's entry is only never asked for."""
_STEPS_KEPT = 2048


async def _step_templates(session: AsyncSession, step_ids: set[uuid.UUID]) -> dict[uuid.UUID, _StepTemplates]:
    """The templates of these steps: from this process's cache, the missing ones in one query."""
    found = {step_id: _STEPS[step_id] for step_id in step_ids if step_id in _STEPS}
    missing = [step_id for step_id in step_ids if step_id not in found]
    if missing:
        rows = (await session.execute(STEP_TEMPLATES_SQL, {"ids": missing})).all()
        if len(_STEPS) + len(rows) > _STEPS_KEPT:
            _STEPS.clear()
        for step_id, subject, text_body, html in rows:
            found[step_id] = _STEPS[step_id] = _StepTemplates(subject, text_body, html)
    return found


GENERIC_PLANS_SQL = text("SET LOCAL plan_cache_mode = auto")
"""The engine forces a custom plan per run (``kit.db``); the sender's statements read one inbox's due
messages or rows by primary key, whose plans do not depend on the values, so in its transactions
PostgreSQL may reuse a generic plan instead of planning every chunk's statements again."""

UNBUDGETED_SQL = text(
    """
SELECT id, step FROM messages
WHERE account_id = :account_id AND budget_day IS NULL AND state = 'deferred' AND retry_at <= :now
ORDER BY created_at
LIMIT :limit
FOR UPDATE SKIP LOCKED
"""
)

RECORD_SQL = text(
    """
WITH sent AS (
    UPDATE messages m
    SET state = 'sent', sent_at = :now, reply_code = r.code, reply_enhanced = r.enhanced, reply_text = r.reply_text,
        error_code = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:codes AS int[]), CAST(:enhanced AS varchar[]), CAST(:texts AS text[]),
                CAST(:next_send_at AS timestamptz[])) AS r(id, code, enhanced, reply_text, next_at)
    WHERE m.id = r.id
    RETURNING m.enrollment_id, m.step, r.next_at
), advanced AS (
    UPDATE enrollments e
    SET next_step = s.step + 1,
        status = CASE WHEN e.status = 'active' AND s.next_at IS NULL THEN 'completed' ELSE e.status END,
        next_send_at = CASE WHEN e.status = 'active' THEN s.next_at END,
        updated_at = :now
    FROM sent s
    WHERE e.id = s.enrollment_id
    RETURNING e.id
)
SELECT (SELECT count(*) FROM sent), (SELECT count(*) FROM advanced)
"""
)
"""A chunk's ``sent`` messages in one statement, each with its reply, and their enrollments moved to the
next step at the time given per message (or completed). The other outcomes follow one by one
(``_record_one``), after their attempt rows (``ATTEMPTS_SQL``)."""

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


async def lease(
    session: AsyncSession, account: EmailAccount, *, owner: str, now: datetime, limit: int, lease_seconds: int
) -> list[LeasedRow]:
    """Lease up to ``limit`` due messages of the inbox, oldest first: their attempt begins (counted).

    A message holding no budget (a retry moved to a later day) first reserves a send of today's budget,
    within ``daily_send_limit`` (and ``daily_new_contacts_limit`` for step 1); what does not fit waits
    for the next UTC day."""
    values = {
        "account_id": account.id,
        "now": now,
        "limit": limit,
        "owner": owner,
        "expires": now + timedelta(seconds=lease_seconds),
    }
    rows = await _lease_rows(session, values)
    if len(rows) < limit:
        unbudgeted = (await session.execute(UNBUDGETED_SQL, values | {"limit": limit - len(rows)})).all()
        if unbudgeted:
            granted = await _reserve_today(session, account.id, [step for _, step in unbudgeted], now)
            held = [message_id for (message_id, _), ok in zip(unbudgeted, granted, strict=True) if ok]
            waiting = [message_id for (message_id, _), ok in zip(unbudgeted, granted, strict=True) if not ok]
            if waiting:
                await session.execute(
                    update(Message).where(Message.id.in_(waiting)).values(retry_at=utc_midnight_after(now))
                )
            if held:
                await session.execute(update(Message).where(Message.id.in_(held)).values(budget_day=utc_day(now)))
                rows += await _lease_rows(session, values | {"limit": limit - len(rows)})
    return rows


async def _reserve_today(
    session: AsyncSession, account_id: uuid.UUID, steps: Sequence[int], now: datetime
) -> list[bool]:
    """Reserve today's sends for these messages (by step) in order, as far as the inbox's limits allow.

    The usage row is locked for the transaction, so a concurrent pick (which re-checks the committed
    row) never spends the same send."""
    day = utc_day(now)
    await session.execute(
        insert(AccountDailyUsage)
        .values(account_id=account_id, day=day, sends=0, new_contacts=0)
        .on_conflict_do_nothing()
    )
    usage = await session.scalar(
        select(AccountDailyUsage)
        .where(AccountDailyUsage.account_id == account_id, AccountDailyUsage.day == day)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    account = await session.get_one(EmailAccount, account_id)
    assert usage is not None
    granted: list[bool] = []
    for step in steps:
        new_limit = account.daily_new_contacts_limit if step == 0 else None
        ok = usage.sends < account.daily_send_limit and (new_limit is None or usage.new_contacts < new_limit)
        if ok:
            usage.sends += 1
            usage.new_contacts += 1 if step == 0 else 0
        granted.append(ok)
    return granted


def _prepare(
    rows: Sequence[LeasedRow], steps: dict[uuid.UUID, _StepTemplates], account: EmailAccount, public_url: str
) -> list[_Work]:
    """Render each leased message (pure CPU: everything came with the lease and ``_step_templates``)."""
    sender, from_name, reply_to = account.email, account.from_name, account.reply_to
    work: list[_Work] = []
    for row in rows:
        next_delay = None
        if row.next_delay is not None:
            low, high = row.jitter_min, row.jitter_max
            extra = random.randint(low, high) if low is not None and high is not None else 0  # noqa: S311
            next_delay = timedelta(seconds=row.next_delay + extra)
        if row.status != "active" or row.suppressed:
            work.append(_Work(row.id, row.enrollment_id, row.step, row.email, row.budget_day, None, None, next_delay))
            continue
        url, mailto = unsubscribe_links(public_url, sender, row.unsubscribe_token)
        try:
            step = steps.get(row.step_id) if row.step_id is not None else None
            if step is None:
                raise TemplateProblem("text", "the step no longer exists")
            text_body, html_body = render_body(step, row, url)
            raw = mime.render(
                mime.OutgoingMail(
                    from_email=sender,
                    from_name=from_name,
                    to_email=row.email,
                    to_name=" ".join(p for p in (row.first_name, row.last_name) if p) or None,
                    reply_to=reply_to,
                    subject=row.subject,
                    text=text_body,
                    html=html_body,
                    message_id=row.message_id_header,
                    in_reply_to=row.in_reply_to,
                    references=(row.in_reply_to,) if row.in_reply_to else (),
                    unsubscribe_url=url,
                    unsubscribe_mailto=mailto,
                )
            )
        except (TemplateProblem, mime.HeaderInjection) as exc:
            work.append(_Work(row.id, row.enrollment_id, row.step, row.email, row.budget_day, None, f"template: {exc}"))
            continue
        work.append(_Work(row.id, row.enrollment_id, row.step, row.email, row.budget_day, raw, None, next_delay))
    return work


async def run_inbox(deps: SenderDeps, account_id: uuid.UUID, *, max_seconds: float = 60.0) -> SendReport:
    """Send the inbox's due messages until none are left or ``max_seconds`` have passed."""
    report = SendReport()
    async with deps.sessionmaker() as session, session.begin():
        account = await session.get(EmailAccount, account_id)
        if account is None or not account.is_active or account.disabled_at is not None:
            report.stopped_reason = "inbox not sending"
            return report
    lanes = max(1, account.max_connections)
    chunk = min(deps.commit_every, deps.batch)
    if deps.pacer is not None and deps.pacer.paced:
        chunk = min(chunk, max(1, math.ceil(deps.pacer.rate)))  # at most about a second of sends per chunk
    lane = _Lane(
        deps,
        account,
        _server(account, _PasswordOnDemand(deps, account.id)),
        PoolKey(str(account.id), account.credentials_version),
        lanes,
        chunk,
        time.monotonic() + max_seconds,
        report,
        [],
    )

    async def run_lane() -> None:
        if deps.pacer is None:
            await lane.run(None)
            return
        async with deps.pacer.slot(str(account.id), lanes) as slot:
            await lane.run(slot.wait_turn)

    await asyncio.gather(*(run_lane() for _ in range(lanes)))
    if lane.credential_failure:
        await _hand_back(deps, account.id, lane.credential_failure[0])
        report.stopped_reason = lane.credential_failure[0].code
    return report


def _server(account: EmailAccount, password: _PasswordOnDemand) -> SmtpServer:
    return SmtpServer(
        host=account.smtp_host,
        port=account.smtp_port,
        mode=account.smtp_mode,  # type: ignore[arg-type]
        username=account.smtp_username,
        password=None,
        allow_plaintext_auth=account.smtp_allow_plaintext_auth,
        password_source=password,
    )


class _PasswordOnDemand:
    """The inbox's SMTP password, decrypted (audited, purpose ``send``) the first time this run opens a
    connection, then kept for the run's other connections. A run whose pooled connection is still
    logged in never decrypts it: a sender woken every few seconds does not write an audit row each time,
    only when it logs in."""

    def __init__(self, deps: SenderDeps, account_id: uuid.UUID) -> None:
        self._deps, self._account_id = deps, account_id
        self._lock = asyncio.Lock()
        self._fetched = False
        self._secret: Secret | None = None

    async def __call__(self) -> Secret | None:
        async with self._lock:
            if not self._fetched:
                async with self._deps.sessionmaker() as session, session.begin():
                    self._secret = await self._deps.vault.reveal_for_account(
                        session, self._account_id, "smtp_password", actor=SENDER_ACTOR, purpose="send"
                    )
                self._fetched = True
            return self._secret


@dataclass
class _Lane:
    """The inbox's sending, shared by its lanes (one per connection): each leases a chunk, sends it on
    its connection and records it, until nothing is due, the time is up or the login failed."""

    deps: SenderDeps
    account: EmailAccount
    server: SmtpServer
    key: PoolKey
    lanes: int
    chunk: int
    deadline: float
    report: SendReport
    credential_failure: list[SmtpError]

    @property
    def chain(self) -> bool:
        """Unpaced: each message's envelope goes with the previous one's final dot (``client.transmit``)."""
        return self.deps.pacer is None or not self.deps.pacer.paced

    async def run(self, wait_turn: Callable[[], Awaitable[float]] | None) -> None:
        """Lease, send, record, chunk after chunk. A chunk's outcomes are committed in the transaction
        that leases the next chunk (one transaction per chunk); on an error or a cancellation they are
        committed at once, and the unsent rest of the chunk is given back."""
        sent: _Chunk | None = None
        while True:
            more = time.monotonic() < self.deadline and not self.credential_failure
            started = datetime.now(UTC)
            rows, steps = await self._commit(sent, started if more else None)
            if sent is not None:
                for result in sent.results:
                    self.report.outcomes[result.outcome] += 1
            if not rows:
                return
            items = _prepare(rows, steps, self.account, self.deps.public_url)
            results = [_Result(i, "rendering_failed" if i.failure else "suppressed") for i in items if i.raw is None]
            pending = [i for i in items if i.raw is not None]
            failure: BaseException | None = None
            try:
                await self._send_all(pending, wait_turn, results)
            except BaseException as exc:
                failure = exc
            sent = _Chunk(started, results, _unsent(pending, results))
            if failure is not None:
                # Recorded even when the task is being cancelled: what was sent must not turn ``unknown``.
                await self._commit(sent, None)
                raise failure

    async def _commit(self, sent: _Chunk | None, now: datetime | None) -> _Leased:
        """``_record_and_lease``, run to its end even if this task is cancelled meanwhile: the outcomes
        must be committed. A chunk it leased that nobody will now send is given back."""
        task = asyncio.ensure_future(self._record_and_lease(sent, now))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                rows, _ = await task
                if rows:
                    async with self.deps.sessionmaker() as session, session.begin():
                        await _give_back_in(session, self.deps.worker_id, [row.id for row in rows])
            raise

    async def _record_and_lease(self, sent: _Chunk | None, now: datetime | None) -> _Leased:
        """One transaction: record the chunk that was sent (if any), lease the next (unless ``now`` is None)
        with the templates of its steps."""
        deps = self.deps
        if sent is None and now is None:
            return _Leased([], {})
        async with deps.sessionmaker() as session, session.begin():
            await session.execute(GENERIC_PLANS_SQL)
            if sent is not None:
                await _record(session, deps.worker_id, self.account, sent)
            if now is None:
                return _Leased([], {})
            rows = await lease(
                session, self.account, owner=deps.worker_id, now=now, limit=self.chunk, lease_seconds=deps.lease_seconds
            )
            return _Leased(rows, await _step_templates(session, {r.step_id for r in rows if r.step_id is not None}))

    async def _send_all(
        self, pending: list[_Work], wait_turn: Callable[[], Awaitable[float]] | None, results: list[_Result]
    ) -> None:
        """Send the chunk on one leased connection; a connection that broke is replaced for the rest.
        Stops at a credential-level failure (the rest is given back)."""
        index = 0
        while index < len(pending) and not self.credential_failure:
            try:
                async with self.deps.pool.connection(self.key, self.server, max_connections=self.lanes) as conn:
                    while index < len(pending) and not self.credential_failure and not conn.discarded:
                        item = pending[index]
                        assert item.raw is not None
                        if wait_turn is not None:
                            await wait_turn()
                        then = None
                        if self.chain and index + 1 < len(pending):
                            # Unpaced: the next message's envelope rides with this one's final dot.
                            following = pending[index + 1]
                            assert following.raw is not None
                            then = Outgoing(self.account.email, [following.to_email], following.raw)
                        try:
                            reply = await conn.transmit(
                                sender=self.account.email, recipients=[item.to_email], message=item.raw, then=then
                            )
                        except SmtpError as exc:
                            results.append(self._failed(item, exc))
                        else:
                            results.append(_Result(item, "sent", reply))
                        index += 1
            except SmtpError as exc:  # the connection could not be opened: this message's outcome
                results.append(self._failed(pending[index], exc))
                index += 1

    def _failed(self, item: _Work, error: SmtpError) -> _Result:
        outcome: Outcome = classify(error.code, error.stage, _enhanced(error))
        if outcome == "credential":
            self.credential_failure.append(error)
        return _Result(item, outcome, None, error)


def _enhanced(error: SmtpError) -> str | None:
    return error.reply.enhanced if error.reply else None


class _Leased(NamedTuple):
    """A leased chunk's rows, and the templates of their steps."""

    rows: Sequence[LeasedRow]
    steps: dict[uuid.UUID, _StepTemplates]


@dataclass
class _Chunk:
    """What one lane did with a leased chunk: the outcomes, and what never reached the wire."""

    started: datetime
    results: list[_Result]
    unsent: list[_Work]


def _unsent(pending: list[_Work], results: list[_Result]) -> list[_Work]:
    done = {r.item.message_id for r in results}
    return [i for i in pending if i.message_id not in done]


async def _record(session: AsyncSession, worker_id: str, account: EmailAccount, chunk: _Chunk) -> None:
    """Every outcome of a chunk: the ``sent`` ones in bulk, the others with an attempt row each;
    messages that never reached the wire are given back as ``queued``, their attempt not counted."""
    now = datetime.now(UTC)
    results, unsent = chunk.results, chunk.unsent
    sent = [r for r in results if r.outcome == "sent"]
    if sent:
        await session.execute(
            RECORD_SQL,
            _reply_columns([r.reply for r in sent])
            | {
                "now": now,
                "ids": [r.item.message_id for r in sent],
                "next_send_at": [now + r.item.next_delay if r.item.next_delay is not None else None for r in sent],
            },
        )
    undelivered = [r for r in results if r.outcome not in ("sent", "suppressed", "rendering_failed")]
    if undelivered:
        await session.execute(ATTEMPTS_SQL, _attempt_rows(undelivered, account.id, chunk.started, now))
    for result in results:
        if result.outcome != "sent":
            await _record_one(session, account, result, now)
    if unsent:
        await _give_back_in(session, worker_id, [item.message_id for item in unsent])


async def _give_back_in(session: AsyncSession, worker_id: str, message_ids: list[uuid.UUID]) -> None:
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


def _attempt_rows(results: list[_Result], account_id: uuid.UUID, started: datetime, now: datetime) -> dict[str, Any]:
    return _reply_columns([r.reply or (r.error.reply if r.error else None) for r in results]) | {
        "account_id": account_id,
        "started": started,
        "now": now,
        "ids": [new_id() for _ in results],
        "message_ids": [r.item.message_id for r in results],
        "outcomes": [r.outcome for r in results],
        "errors": [r.error.code if r.error else None for r in results],
    }


async def _record_one(session: AsyncSession, account: EmailAccount, result: _Result, now: datetime) -> None:
    """An outcome other than ``sent`` (the rare path: one message at a time)."""
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
        await give_back_budget()
    elif outcome == "failed":
        message.state = "failed"
        enrollment.status, enrollment.stop_reason = "failed", error.code if error else "failed"
    elif outcome == "credential":
        # Not sent and not the recipient's doing: handed back with the inbox's other queued messages
        # (the attempt stays on record, but does not count as one of the message's tries).
        message.state = "queued"
        message.attempts = max(0, message.attempts - 1)


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
            if message.budget_day is not None:
                await release(session, account_id, first_step=True, day=message.budget_day)
            await session.delete(message)
        await session.execute(
            update(Message)
            .where(Message.account_id == account_id, Message.state == "leased")
            .values(state="queued", lease_owner=None, lease_expires_at=None)
        )
    log.warning("inbox_paused", account_id=str(account_id), reason=error.code, handed_back=len(firsts))
