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

PostgreSQL going away between 2 and 3 (a restart, a failover) does not turn what was sent ``unknown``:
step 3 is tried again with backoff (``kit.outage``) while the lease lasts (up to half of it, at most
``RECORD_RIDE_OUT_SECONDS``), and a try after one whose commit may have gone through first checks
whether it did (the chunk's messages are no longer leased by this worker), so nothing is recorded twice.

The inbox's password is decrypted (audited, purpose ``send``) only when a run opens a connection, at most once
per run (``_PasswordOnDemand``), and never leaves this process. An OAuth inbox's secret is its access token
(``oauth.sources.TokenSource``): refreshed before it expires, and once more when a login is refused with it
(the lane then opens its connection again, the message it was for still unsent); a dead grant pauses the
inbox like a refused password, its queued messages handed to the rest of the pool, while a token endpoint
that cannot answer is a transient failure of each send it held up (tried again later, the inbox not paused).
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
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import structlog
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.campaigns.templates import TemplateProblem, render_body
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit import metrics
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.outage import Outages, ride_out
from nimbus_api.models import EmailAccount, Message
from nimbus_api.oauth.sources import REAUTHORIZE_HINT, TokenSource
from nimbus_api.sending import mime
from nimbus_api.sending.dispatcher import unsubscribe_links
from nimbus_api.sending.lease import GENERIC_PLANS_SQL, LeasedRow, StepTemplates, lease, step_templates
from nimbus_api.sending.outcomes import Outcome, classify
from nimbus_api.sending.record import Chunk, Result, Work, give_back, pause_inbox, record_chunk
from nimbus_api.sending.relay import RelayEvidence
from nimbus_api.smtp.client import Outgoing, SmtpServer
from nimbus_api.smtp.errors import SmtpError
from nimbus_api.smtp.pacing import Pacer
from nimbus_api.smtp.pool import PoolKey, SmtpPool

log = structlog.get_logger(__name__)
SENDER_ACTOR = Actor.system("sender")
RECORD_RIDE_OUT_SECONDS = 60.0
"""How long a lane waits for PostgreSQL to come back to record a chunk it sent (at most half the lease)."""


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
    outages: Outages = field(default_factory=Outages)
    bounce_min_sample: int = 20
    #: an OAuth inbox's token refresh needs the provider settings (None: its stored token is used as is)
    settings: Settings | None = None


@dataclass
class SendReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    stopped_reason: str | None = None

    def add(self, outcome: str) -> None:
        """One outcome, committed: counted here and in ``nimbus_sends_total`` (never before the commit, so
        a recording tried again after an outage counts once)."""
        self.outcomes[outcome] += 1
        metrics.count_send(outcome)


def _prepare(
    rows: Sequence[LeasedRow], steps: dict[uuid.UUID, StepTemplates], account: EmailAccount, public_url: str
) -> list[Work]:
    """Render each leased message (pure CPU: everything came with the lease and ``step_templates``)."""
    sender, from_name, reply_to = account.email, account.from_name, account.reply_to
    work: list[Work] = []
    for row in rows:
        next_delay = None
        if row.next_delay is not None:
            low, high = row.jitter_min, row.jitter_max
            extra = random.randint(low, high) if low is not None and high is not None else 0  # noqa: S311
            next_delay = timedelta(seconds=row.next_delay + extra)
        if row.status != "active" or row.suppressed:
            work.append(Work(row.id, row.enrollment_id, row.step, row.email, row.budget_day, None, None, next_delay))
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
            work.append(Work(row.id, row.enrollment_id, row.step, row.email, row.budget_day, None, f"template: {exc}"))
            continue
        work.append(Work(row.id, row.enrollment_id, row.step, row.email, row.budget_day, raw, None, next_delay))
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
    tokens = _token_source(deps, account)
    lane = _Lane(
        deps,
        account,
        _server(account, tokens or _PasswordOnDemand(deps, account.id)),
        PoolKey(str(account.id), account.credentials_version),
        lanes,
        chunk,
        time.monotonic() + max_seconds,
        report,
        tokens=tokens,
    )

    async def run_lane() -> None:
        if deps.pacer is None:
            await lane.run(None)
            return
        async with deps.pacer.slot(str(account.id), lanes) as slot:
            await lane.run(slot.wait_turn)

    try:
        await asyncio.gather(*(run_lane() for _ in range(lanes)))
        if lane.evidence.suspects and not lane.credential_failure:
            await lane.probe()
    finally:
        if lane.evidence.suspects:  # the run failed before a verdict: retried later, never left leased
            lane.evidence.defer()
        await lane.record_decided()
    if lane.credential_failure:
        error = lane.credential_failure[0]
        await pause_inbox(deps.sessionmaker, account.id, error, lane.culprits)
        report.stopped_reason = error.code
    return report


def _server(account: EmailAccount, password: Callable[[], Awaitable[Secret | None]]) -> SmtpServer:
    oauth = account.auth_method == "oauth2"
    return SmtpServer(
        host=account.smtp_host,
        port=account.smtp_port,
        mode=account.smtp_mode,  # type: ignore[arg-type]
        username=account.smtp_username or (account.email if oauth else None),
        password=None,
        allow_plaintext_auth=account.smtp_allow_plaintext_auth,
        password_source=password,
        auth_mechanism="oauth2" if oauth else "password",
    )


def _token_error(dead: bool, detail: str) -> SmtpError:
    """What a login raises instead of using a token: a dead grant is a credential failure (the inbox is
    paused), an unreachable token endpoint a transient one (the message is retried later)."""
    if dead:
        return SmtpError("smtp.auth_failed", detail, "auth", None, REAUTHORIZE_HINT)
    return SmtpError("smtp.connection_refused", detail, "connect")


def _token_source(deps: SenderDeps, account: EmailAccount) -> TokenSource | None:
    if account.auth_method != "oauth2" or deps.settings is None:
        return None
    return TokenSource(
        deps.sessionmaker,
        deps.vault,
        deps.settings,
        account.id,
        actor=SENDER_ACTOR,
        purpose="send",
        error=_token_error,
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
    credential_failure: list[SmtpError] = field(default_factory=list)
    culprits: list[Work] = field(default_factory=list)
    """The messages whose sends paused the inbox (``record.pause_inbox`` hands each over at most once)."""
    evidence: RelayEvidence = field(default_factory=RelayEvidence)
    tokens: TokenSource | None = None
    """An OAuth inbox's token: a login refused with it is refreshed and tried again, once per lane."""

    @property
    def chain(self) -> bool:
        """Unpaced: each message's envelope goes with the previous one's final dot (``client.transmit``)."""
        return self.deps.pacer is None or not self.deps.pacer.paced

    async def run(self, wait_turn: Callable[[], Awaitable[float]] | None) -> None:
        """Lease, send, record, chunk after chunk. A chunk's outcomes are committed in the transaction
        that leases the next chunk (one transaction per chunk); on an error or a cancellation they are
        committed at once, and the unsent rest of the chunk is given back."""
        sent: Chunk | None = None
        while True:
            more = time.monotonic() < self.deadline and not self.credential_failure
            started = datetime.now(UTC)
            rows, steps = await self._commit(sent, started if more else None)
            if sent is not None:
                for result in sent.results:
                    self.report.add(result.outcome)
            if not rows:
                return
            items = _prepare(rows, steps, self.account, self.deps.public_url)
            results = [Result(i, "rendering_failed" if i.failure else "suppressed") for i in items if i.raw is None]
            pending = [i for i in items if i.raw is not None]
            failure: BaseException | None = None
            try:
                await self._send_all(pending, wait_turn, results)
            except BaseException as exc:
                failure = exc
            results += self.evidence.take_decided()
            sent = Chunk(started, results, _unsent(pending, results, self.evidence.suspects))
            if failure is not None:
                # Recorded even when the task is being cancelled: what was sent must not turn ``unknown``.
                await self._commit(sent, None)
                for result in sent.results:
                    self.report.add(result.outcome)
                raise failure

    async def _commit(self, sent: Chunk | None, now: datetime | None) -> _Leased:
        """``_record_and_lease``, run to its end even if this task is cancelled meanwhile: the outcomes
        must be committed. A chunk it leased that nobody will now send is given back."""
        task = asyncio.ensure_future(self._record_and_lease_riding_out(sent, now))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                rows, _ = await task
                if rows:
                    async with self.deps.sessionmaker() as session, session.begin():
                        await give_back(session, self.deps.worker_id, [row.id for row in rows])
            raise

    async def _record_and_lease_riding_out(self, sent: Chunk | None, now: datetime | None) -> _Leased:
        """``_record_and_lease``, tried again while PostgreSQL is away (see the module docstring)."""
        deadline = time.monotonic() + min(RECORD_RIDE_OUT_SECONDS, self.deps.lease_seconds / 2)
        tries = 0

        async def attempt() -> _Leased:
            nonlocal tries
            tries += 1
            if tries > 1 and sent is not None and await self._recorded(sent):
                return await self._record_and_lease(None, now)
            return await self._record_and_lease(sent, now)

        return await ride_out(attempt, self.deps.outages.postgres, deadline=deadline)

    async def _recorded(self, sent: Chunk) -> bool:
        """Whether an earlier try committed ``sent`` (its transaction moves every message of the chunk out
        of this worker's lease, so one still leased means it did not)."""
        ids = [r.item.message_id for r in sent.results] + [item.message_id for item in sent.unsent]
        if not ids:
            return True
        async with self.deps.sessionmaker() as session:
            still_leased = await session.scalar(
                select(
                    exists().where(
                        Message.id.in_(ids), Message.state == "leased", Message.lease_owner == self.deps.worker_id
                    )
                )
            )
        return not still_leased

    async def _record_and_lease(self, sent: Chunk | None, now: datetime | None) -> _Leased:
        """One transaction: record the chunk that was sent (if any), lease the next (unless ``now`` is None)
        with the templates of its steps."""
        deps = self.deps
        if sent is None and now is None:
            return _Leased([], {})
        async with deps.sessionmaker() as session, session.begin():
            await session.execute(GENERIC_PLANS_SQL)
            if sent is not None:
                await record_chunk(session, deps.worker_id, self.account, sent, min_sample=deps.bounce_min_sample)
            if now is None:
                return _Leased([], {})
            rows = await lease(
                session, self.account, owner=deps.worker_id, now=now, limit=self.chunk, lease_seconds=deps.lease_seconds
            )
            return _Leased(rows, await step_templates(session, {r.step_id for r in rows if r.step_id is not None}))

    async def _send_all(
        self, pending: list[Work], wait_turn: Callable[[], Awaitable[float]] | None, results: list[Result]
    ) -> None:
        """Send the chunk on one leased connection; a connection that broke is replaced for the rest.
        Stops at a credential-level failure (the rest is given back)."""
        index = 0
        retried = False
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
                            with metrics.timed(metrics.SEND_SECONDS):
                                reply = await conn.transmit(
                                    sender=self.account.email, recipients=[item.to_email], message=item.raw, then=then
                                )
                        except SmtpError as exc:
                            self._failed(item, exc, results)
                        else:
                            self.evidence.saw_accepted()
                            results.append(Result(item, "sent", reply))
                        index += 1
            except SmtpError as exc:  # the connection could not be opened: this message's outcome
                error = exc
                if self.tokens is not None and exc.code == "smtp.auth_failed" and exc.oauth_status is not None:
                    # an OAuth login refused with the token (SMTP 334/535 with an OAuth status): refresh it
                    try:
                        ready = await self.tokens.refused()
                    except SmtpError as token_error:
                        # a dead grant (credential: the inbox pauses) or the token endpoint down (transient:
                        # the message is tried again later, the inbox goes on)
                        error = token_error
                    else:
                        if ready and not retried:
                            retried = True  # the same message, on a connection logged in with the new token
                            continue
                self._failed(pending[index], error, results)
                index += 1

    def _failed(self, item: Work, error: SmtpError, results: list[Result]) -> None:
        """Record a refused send in ``results``, unless it is a relay refusal held as a suspect
        (``sending.relay``); a credential-level failure stops the run (the inbox is paused after it)."""
        outcome: Outcome = classify(error.code, error.stage, _enhanced(error))
        if error.stage in ("data", "dot"):
            self.evidence.saw_accepted()  # the recipient was accepted: relay works
        result = Result(item, outcome, None, error)
        if outcome == "relay_denied":
            now, the_inboxes = self.evidence.refused(result)
            if now is not None:
                results.append(now)
            self._inbox_at_fault(the_inboxes)
            return
        if outcome == "credential":
            self._inbox_at_fault([result])
        results.append(result)

    def _inbox_at_fault(self, met: list[Result], error: SmtpError | None = None) -> None:
        """The inbox cannot send: the run stops with ``error`` (else the first of these sends' errors), and
        these sends are the ones that met it (``record.pause_inbox`` hands each over at most once)."""
        if not met and error is None:
            return
        first = error or next((r.error for r in met if r.error is not None), None)
        if first is not None and not self.credential_failure:
            self.credential_failure.append(first)
        self.culprits += [r.item for r in met]

    async def probe(self) -> None:
        """The run ended with relay refusals and nothing accepted: ask the server whether it would take
        mail for the inbox's own address (nothing is sent), and decide the suspects by its answer."""
        own = self.account.email
        try:
            async with self.deps.pool.connection(self.key, self.server, max_connections=self.lanes) as conn:
                refusal = await conn.probe(sender=own, recipient=own)
        except SmtpError as exc:
            if classify(exc.code, exc.stage, _enhanced(exc)) == "credential":  # the login or sender is refused
                self._inbox_at_fault(self.evidence.decide("inbox"), exc)
            else:
                self.evidence.defer()
            return
        if refusal is not None and classify(refusal.code, refusal.stage, _enhanced(refusal)) == "relay_denied":
            self._inbox_at_fault(self.evidence.decide("inbox"))
        else:
            self.evidence.decide("recipient")

    async def record_decided(self) -> None:
        """Record the suspects decided after the lanes stopped (by the probe, or deferred)."""
        decided = self.evidence.take_decided()
        if not decided:
            return
        async with self.deps.sessionmaker() as session, session.begin():
            await record_chunk(
                session,
                self.deps.worker_id,
                self.account,
                Chunk(datetime.now(UTC), decided, []),
                min_sample=self.deps.bounce_min_sample,
            )
        for result in decided:
            self.report.add(result.outcome)


def _enhanced(error: SmtpError) -> str | None:
    return error.reply.enhanced if error.reply else None


class _Leased(NamedTuple):
    """A leased chunk's rows, and the templates of their steps."""

    rows: Sequence[LeasedRow]
    steps: dict[uuid.UUID, StepTemplates]


def _unsent(pending: list[Work], results: list[Result], held: list[Result]) -> list[Work]:
    done = {r.item.message_id for r in results} | {r.item.message_id for r in held}
    return [i for i in pending if i.message_id not in done]
