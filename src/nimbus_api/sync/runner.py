"""The IMAP sync of one worker process: hold leases, keep connections, poll what is due, store.

Two loops run in each worker that has ``sync_enabled``:

* **leases** (every ``lease / 3``): renew the held leases in one statement and drop the mailboxes lost;
  reload the held mailboxes' settings (an edited password or host reconnects at the next poll); claim
  free ones up to this worker's share; release the excess above it; close idle connections.
* **polls** (every ``TICK`` s): start a poll for each held mailbox whose ``next_poll_at`` has come, at
  most ``sync_concurrency`` at once. Due times are spread (``mailboxes.spread_offset``) and kept in phase
  (``status.next_on_time``), so 1,000 mailboxes at 30 s poll about 33 per second, not 1,000 at once.

A poll hands each batch of messages with its folder's cursor to the ``Storer``, which commits the batches of
the polls of the moment together (group commit), after re-checking their leases; a worker that lost a
mailbox meanwhile writes nothing for it and forgets it. Its outcome
(``status``) is recorded the same way. Postgres is the truth throughout: a worker keeps in memory only
what it read from the rows it holds and wrote itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.imap import ImapError
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.kit.outage import Outages, backoff, outage_of
from nimbus_api.oauth import tokens as oauth_tokens
from nimbus_api.oauth.sources import REAUTHORIZE_HINT
from nimbus_api.oauth.tokens import RefreshUnavailable
from nimbus_api.stages.cooldown import CooldownRules
from nimbus_api.sync import leases, mailboxes, status
from nimbus_api.sync.connections import ConnectionBook
from nimbus_api.sync.mailboxes import Mailbox
from nimbus_api.sync.poller import Limits, poll
from nimbus_api.sync.storer import LeaseLost, Storer
from nimbus_api.warmup.marker import Marker

log = structlog.get_logger(__name__)
TICK = 0.25


@dataclass(frozen=True)
class SyncConfig:
    capacity: int
    concurrency: int
    lease_seconds: float
    max_message_bytes: int
    window_days: int
    idle_close_seconds: float
    backoff_max_seconds: float
    bounce_min_sample: int = 20
    cooldown: CooldownRules = field(default_factory=CooldownRules)


def sync_config(settings: Settings) -> SyncConfig:
    return SyncConfig(
        capacity=settings.sync_max_connections,
        concurrency=settings.sync_concurrency,
        lease_seconds=settings.sync_lease_seconds,
        max_message_bytes=settings.sync_max_message_bytes,
        window_days=settings.sync_window_days,
        idle_close_seconds=settings.sync_idle_close_seconds,
        backoff_max_seconds=settings.sync_backoff_max_seconds,
        bounce_min_sample=settings.bounce_min_sample,
        cooldown=CooldownRules.from_settings(settings),
    )


@dataclass
class SyncStats:
    polls: int = 0
    failures: int = 0
    stored: int = 0
    fetched: int = 0
    idle_polls: int = 0
    lost: int = 0
    claimed: int = 0
    released: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class SyncRunner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        net: NetContext,
        vault: Vault,
        config: SyncConfig,
        *,
        owner: str,
        outages: Outages | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        oauth_settings: Settings | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        #: an OAuth mailbox's token refresh needs the provider settings (None: its stored token as is)
        self.oauth_settings = oauth_settings
        self._token_versions: dict[uuid.UUID, int] = {}
        self.vault = vault
        self.config = config
        self.owner = owner
        self.outages = outages or Outages()
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.actor = Actor.system("imap_sync")
        self.book = ConnectionBook(
            net, self._open_password, capacity=config.capacity, idle_close=config.idle_close_seconds
        )
        self.held: dict[uuid.UUID, Mailbox] = {}
        self.stats = SyncStats()
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(config.concurrency)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._successes: dict[uuid.UUID, tuple[uuid.UUID, datetime, datetime]] = {}
        self.storer = Storer(
            sessionmaker,
            owner,
            min_sample=config.bounce_min_sample,
            clock=clock,
            cooldown=config.cooldown,
            marker=Marker.from_keyring(vault.keyring),
        )
        self.limits = Limits(max_message_bytes=config.max_message_bytes, window_days=config.window_days)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._lease_loop(), name="sync-leases"))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="sync-polls"))

    async def stop(self) -> None:
        """Stop polling, let running polls end (bounded), release every lease, close the connections."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.storer.close()
        with contextlib.suppress(Exception):
            await self.flush_successes()
        with contextlib.suppress(Exception):
            async with self.sessionmaker() as session:
                await leases.release(session, self.owner, list(self.held))
                await leases.leave(session, self.owner)
                await session.commit()
        self.held.clear()
        await self.book.close_all()

    # --- leases -----------------------------------------------------------------------------
    async def _lease_loop(self) -> None:
        failed = 0
        while not self._stopping:
            try:
                await self.lease_round()
            except Exception as exc:
                failed += 1
                if outage_of(exc) is None:
                    log.exception("sync_lease_round_failed")
                else:
                    self.outages.failed(exc)
                await asyncio.sleep(min(backoff(failed), self.config.lease_seconds / 3))
                continue
            if failed:
                self.outages.of("postgres").recovered()
            failed = 0
            await asyncio.sleep(self.config.lease_seconds / 3)

    async def lease_round(self) -> None:
        """Renew, reload, claim up to the share, release the excess. Safe to call from a test."""
        ttl = self.config.lease_seconds
        async with self.sessionmaker() as session:
            await leases.heartbeat(session, self.owner, ttl)
            kept = await leases.renew(session, self.owner, list(self.held), ttl)
            for account_id in [i for i in self.held if i not in kept]:
                await self._forget(account_id, lost=True)
            share = await leases.share(session, self.owner, self.config.capacity)
            excess = len(self.held) - share.target
            if excess > max(1, share.target // 10):
                # give back the ones due last: another worker can take them before they are due
                victims = sorted(
                    (i for i in self.held if i not in self._running), key=lambda i: self.held[i].next_poll_at
                )[-excess:]
                await leases.release(session, self.owner, victims)
                for account_id in victims:
                    await self._forget(account_id)
                self.stats.released += len(victims)
            claimed = await leases.claim(session, self.owner, share.target - len(self.held), ttl)
            self.stats.claimed += len(claimed)
            await session.commit()
            fresh = await mailboxes.load(session, [*self.held, *claimed])
            await session.commit()
        for account_id in claimed:
            mailbox = fresh.get(account_id)
            if mailbox is not None:
                self.held[account_id] = mailbox
        for account_id, mailbox in list(self.held.items()):
            latest = fresh.get(account_id)
            if latest is None:  # IMAP removed or account deleted: its row went with it
                await self._forget(account_id)
            elif latest.settings_key != mailbox.settings_key or latest.folder != mailbox.folder:
                latest.cursors, latest.next_poll_at = mailbox.cursors, mailbox.next_poll_at
                self.held[account_id] = latest
            else:
                mailbox.interval = latest.interval
        await self.book.close_idle()

    async def _forget(self, account_id: uuid.UUID, *, lost: bool = False) -> None:
        self.held.pop(account_id, None)
        if lost:
            self.stats.lost += 1
        if account_id not in self._running:
            await self.book.discard(account_id, graceful=True)

    # --- polls ------------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while not self._stopping:
            self.start_due()
            await asyncio.sleep(TICK)
            await self.flush_successes()

    async def flush_successes(self) -> None:
        """Write the successful polls since the last flush (``status.record_successes``), in one statement."""
        if not self._successes:
            return
        done, self._successes = list(self._successes.values()), {}
        try:
            async with self.sessionmaker() as session:
                await status.record_successes(session, self.owner, done)
                await session.commit()
        except Exception as exc:
            if outage_of(exc) is None:
                raise
            self.outages.failed(exc)
            for item in done:  # kept for the next flush, unless a newer outcome replaced them
                self._successes.setdefault(item[0], item)

    def start_due(self) -> int:
        now = self.clock()
        started = 0
        for account_id, mailbox in list(self.held.items()):
            if account_id in self._running or mailbox.next_poll_at > now:
                continue
            task = asyncio.create_task(self._poll_one(mailbox), name=f"sync-poll-{account_id}")
            self._running[account_id] = task
            task.add_done_callback(self._finished(account_id))
            started += 1
        return started

    def _finished(self, account_id: uuid.UUID) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._running.pop(account_id, None)

        return done

    async def poll_now(self, account_id: uuid.UUID) -> None:
        """Poll one held mailbox now and wait for it, its outcome written (tests, benchmarks)."""
        mailbox = self.held[account_id]
        await self._poll_one(mailbox)
        await self.flush_successes()

    async def run_due(self) -> int:
        """Start every due poll and wait for all of them, their outcomes written (tests, benchmarks)."""
        self.start_due()
        running = list(self._running.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self.flush_successes()
        return len(running)

    async def _poll_one(self, mailbox: Mailbox) -> None:
        async with self._slots:
            if self._stopping or mailbox.account_id not in self.held:
                return
            try:
                try:
                    held = await self.book.get(mailbox)
                except ImapError as exc:
                    if not await self._token_refreshed(mailbox, exc):
                        raise
                    held = await self.book.get(mailbox)  # once more, with the new token
                report = await poll(held, mailbox, self.storer.store, self.limits)
            except LeaseLost:
                await self._forget(mailbox.account_id, lost=True)
                return
            except ImapError as exc:
                self.stats.failures += 1
                self.stats.errors[exc.code] = self.stats.errors.get(exc.code, 0) + 1
                await self.book.discard(mailbox.account_id)
                await self._record(mailbox, exc)
                log.info("sync_poll_failed", account_id=str(mailbox.account_id), code=exc.code)
                return
            except Exception as exc:
                await self.book.discard(mailbox.account_id)
                if outage_of(exc) is None:
                    log.exception("sync_poll_crashed", account_id=str(mailbox.account_id))
                    await self._record(
                        mailbox, ImapError("imap.protocol_error", f"internal error ({type(exc).__name__})")
                    )
                else:
                    self.outages.failed(exc)
                    mailbox.next_poll_at = self.clock() + _seconds(backoff(mailbox.consecutive_failures + 1))
                return
            self.stats.polls += 1
            self.stats.fetched += report.fetched
            self.stats.stored += report.stored
            if report.idle:
                self.stats.idle_polls += 1
            now = self.clock()
            due = status.succeeded(mailbox, now)
            self._successes[mailbox.account_id] = (mailbox.account_id, now, due)

    async def _record(self, mailbox: Mailbox, error: ImapError) -> None:
        """A failed poll, written at once (with ``account.sync_failed`` when one is due)."""
        self._successes.pop(mailbox.account_id, None)  # this outcome is newer than a pending success
        try:
            async with self.sessionmaker() as session:
                if not await leases.lock_held(session, self.owner, mailbox.account_id):
                    await session.rollback()
                    await self._forget(mailbox.account_id, lost=True)
                    return
                await status.record_failure(
                    session, mailbox, error, self.clock(), cap=self.config.backoff_max_seconds, rng=self.rng
                )
                await session.commit()
        except Exception as exc:
            if outage_of(exc) is None:
                raise
            self.outages.failed(exc)
            mailbox.next_poll_at = self.clock() + _seconds(backoff(1))

    async def _open_password(self, mailbox: Mailbox) -> Secret | None:
        if mailbox.auth_method == "oauth2" and self.oauth_settings is not None:
            return await self._open_token(mailbox, refused=False)
        async with self.sessionmaker() as session:
            secret = await self.vault.reveal_for_account(
                session, mailbox.account_id, "imap_password", actor=self.actor, purpose="sync"
            )
            await session.commit()  # the audit row
        return secret

    async def _open_token(self, mailbox: Mailbox, *, refused: bool) -> Secret:
        """An OAuth mailbox's access token (``oauth.tokens.current``); ``refused``: the last one was."""
        assert self.oauth_settings is not None
        try:
            async with self.sessionmaker() as session, session.begin():
                token = await oauth_tokens.current(
                    session,
                    self.vault,
                    self.oauth_settings,
                    mailbox.account_id,
                    actor=self.actor,
                    purpose="sync",
                    refused_version=self._token_versions.get(mailbox.account_id) if refused else None,
                )
        except RefreshUnavailable as exc:
            raise ImapError("imap.connection_refused", f"the OAuth token could not be refreshed: {exc}") from None
        if token is None:
            raise ImapError(
                "imap.auth_failed",
                "the OAuth grant is revoked or expired: the account needs re-authorization",
                data={"oauth": True, "hint": REAUTHORIZE_HINT},
            )
        self._token_versions[mailbox.account_id] = token.version
        return token.secret

    async def _token_refreshed(self, mailbox: Mailbox, error: ImapError) -> bool:
        """A login refused with an OAuth token (IMAP AUTHENTICATIONFAILED): refresh it once, so the poll can
        log in again with the new one. A dead grant or a failed refresh is raised as the poll's failure."""
        if mailbox.auth_method != "oauth2" or self.oauth_settings is None or error.code != "imap.auth_failed":
            return False
        if not error.data.get("oauth") or mailbox.account_id not in self._token_versions:
            return False
        # raises the poll's failure instead: a dead grant (imap.auth_failed, a person must re-authorize) or
        # the token endpoint down (imap.connection_refused: transient, the mailbox is polled again later)
        await self._open_token(mailbox, refused=True)
        return True


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
