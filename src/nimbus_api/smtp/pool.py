"""Pooled SMTP connections per inbox, for one worker process: bounded, reused (RSET between), swept when idle.

One ``SmtpPool`` per worker process. Connections are grouped per inbox (``PoolKey.account_id``) and
bounded by the caller's ``max_connections`` for that inbox; each connection also remembers the exact
``PoolKey`` (with ``credentials_version``) and ``SmtpServer`` it was opened with, and is only reused for
the same key and server. Connections come from ``client.connect``, so they are egress-checked, pinned,
and built on the process's one TLS context (``net.tls``): the pool never builds an ``SSLContext``, and
``PoolMetrics.tls_contexts_built`` counts connections whose TLS layer uses any other context (it stays 0).

Use::

    async with SmtpPool(net) as pool:
        reply = await pool.send(key, server, max_connections=2, sender=..., recipients=[...], message=raw)
        # or, to hold one connection for several messages (a "lane", e.g. with a pacer slot):
        async with pool.connection(key, server, max_connections=2) as conn:
            await conn.transmit(sender=..., recipients=[...], message=raw)

Lifecycle of one connection (states in brackets; every arrow is an event)::

    acquire, no usable idle connection, room under max_connections
        -> [opening]   connect(): TCP, TLS per mode on net.tls, EHLO, AUTH
    [opening]  connect fails                  -> slot freed, the SmtpError is raised to the caller
    [opening]  connected                      -> [leased]
    [leased]   transmit ok                    -> [leased]   (more messages may follow on the same lease)
    [leased]   refusal with a reply, not 421  -> [leased]   marked dirty: RSET before its next transaction
    [leased]   network error, timeout, no reply, 421, cancellation, an exception leaving the block,
               conn.discard()                 -> [closed]   at once, no QUIT       (metrics.discarded)
    [leased]   lease ends normally            -> [idle]
    [leased]   lease ends, but a newer credentials_version was seen, the limit was lowered, or the
               pool is closed                 -> [closing]
    [idle]     acquire for the same key + server: RSET answered 250
                                              -> [leased]                           (metrics.reused)
    [idle]     RSET fails, or the server closed it meanwhile
                                              -> [closed]   and a new one is opened in the same slot
    [idle]     idle longer than idle_timeout (sweep), a newer credentials_version seen, room needed by
               another key or server, pool.close()
                                              -> [closing]  (metrics.closed_idle / closed_stale)
    [closing]  QUIT answered or quit_timeout  -> [closed]

* Bound: per inbox, leased (including opening) + idle + closing connections <= ``max_connections`` (the
  latest value a caller passed). Closing connections count until their QUIT is done, so the server never
  sees more than the bound. Waiting for room is bounded by ``acquire_timeout`` (``PoolTimeout``); the
  connect itself is bounded by the ``NetContext`` timeouts.
* Reuse: an idle connection is handed out only after RSET answered 250 (``client.reset``); if RSET fails
  or the server already closed it, it is discarded and a new one is opened in the same slot.
* Credentials: the bound is per inbox, not per key, so a credentials change never lets an inbox exceed
  ``max_connections``. When a newer ``credentials_version`` is seen, idle connections of older versions
  are closed; sends in flight on them finish, and their connections are closed when returned. A lease
  for an older version (a stale job) gets a connection that is closed when returned, never pooled.
* Outcome of a failed send (``PooledConnection.transmit``): a connection lost before the final dot is
  ``smtp.connection_lost`` at that stage (nothing was accepted: transient, retry); lost or timed out
  after the final dot is ``smtp.connection_lost`` / ``smtp.timeout`` at stage ``dot``: the message may or
  may not have been accepted, never resent blindly (``delivery_unknown``). ``sending.outcomes`` maps
  these to ``transient`` and ``unknown``.
* Pacing is not the pool's business: ``smtp.pacing`` schedules sends (``send(before_send=slot.wait_turn)``
  runs the pacer after the connection is ready, right before MAIL FROM).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from nimbus_api.kit import metrics
from nimbus_api.kit.net import NetContext
from nimbus_api.smtp.client import Outgoing, SmtpConnection, SmtpServer, close_gracefully, connect, reset, transmit
from nimbus_api.smtp.errors import STAGE_WORDS, ServerReply, SmtpError
from nimbus_api.smtp.transaction import probe_recipient

LOST_BEFORE_DOT_HINT = "The connection broke before the message was complete; nothing was accepted: retry."
LOST_AFTER_DOT_HINT = (
    "The connection broke after the whole message was sent, before the server confirmed it: it may or may not "
    "have been accepted. Do not resend blindly."
)


@dataclass(frozen=True)
class PoolKey:
    """Which inbox a connection belongs to, and with which version of its credentials it logged in."""

    account_id: str
    credentials_version: int


@dataclass
class PoolMetrics:
    """Counters since the pool was created (one pool per worker process)."""

    connections_opened: int = 0
    reused: int = 0  # leases served by an idle connection (after RSET)
    discarded: int = 0  # closed at once: network error, timeout, 421, no reply, failed RSET, cancellation
    rset_failed: int = 0  # idle connections whose RSET failed (also counted in discarded)
    closed_idle: int = 0  # closed politely by the idle sweep
    closed_stale: int = 0  # closed because of a newer credentials version, another config, or to make room
    acquire_timeouts: int = 0
    tls_contexts_built: int = 0  # connections whose TLS layer did not use net.tls: stays 0


@dataclass(frozen=True)
class InboxStats:
    limit: int
    leased: int
    idle: int
    closing: int

    @property
    def open(self) -> int:
        return self.leased + self.idle + self.closing


class PoolTimeout(TimeoutError):
    """No connection of the inbox became free within ``acquire_timeout``."""


class PoolClosed(RuntimeError):
    """The pool was closed."""


def delivery_unknown(error: SmtpError) -> bool:
    """True when the message may or may not have been accepted: never resend it blindly.

    That is a timeout or a lost connection after the whole message (and the final dot) was sent.
    """
    return error.stage == "dot" and error.code in ("smtp.timeout", "smtp.connection_lost")


def _connection_lost(error: SmtpError) -> SmtpError:
    stage = error.stage
    if stage == "dot":
        detail = "the connection was lost after the message was sent, before the server confirmed it"
        return SmtpError("smtp.connection_lost", detail, stage, None, LOST_AFTER_DOT_HINT)
    detail = f"the connection was lost during {STAGE_WORDS[stage]}, before the message was complete"
    return SmtpError("smtp.connection_lost", detail, stage, None, LOST_BEFORE_DOT_HINT)


def _keeps_connection(error: BaseException, smtp: SmtpConnection) -> bool:
    """After ``error``, is the connection still in a known state (a refusal with a reply, not 421)?"""
    return (
        isinstance(error, SmtpError)
        and error.reply is not None
        and error.reply.code != 421
        and smtp.is_connected
        and error.stage not in ("connect", "tls", "ehlo", "auth")
    )


class PooledConnection:
    """One pooled SMTP connection; handed out by ``SmtpPool.connection`` for the length of a lease."""

    def __init__(self, pool: SmtpPool, inbox: _Inbox, key: PoolKey, server: SmtpServer, smtp: SmtpConnection) -> None:
        self._pool = pool
        self._inbox = inbox
        self.key = key
        self.server = server
        self.smtp = smtp
        self.messages = 0  # accepted messages over the life of the connection
        self.created = time.monotonic()
        self.last_used = self.created
        self.reused = False  # whether the current lease got it from the idle set
        self.discarded = False
        self._dirty = False  # a refused transaction left state behind: RSET before the next one
        self._leased = False
        self._intact = False  # set by send() while nothing was sent in this lease: errors do not discard

    def discard(self) -> None:
        """Close this connection now; it will not be reused (the lease still ends with the ``async with``)."""
        if not self.discarded:
            self.discarded = True
            self.smtp.close()
            self._pool.metrics.discarded += 1

    async def _ready(self, what: str) -> None:
        """Before a transaction or a probe: the lease is live, and a refusal's leftover state is reset (RSET)."""
        if not self._leased:
            raise RuntimeError("this connection is not leased: use it inside `async with pool.connection(...)`")
        if self.discarded:
            raise SmtpError("smtp.connection_lost", "the connection was discarded", "mail", None, LOST_BEFORE_DOT_HINT)
        if self._dirty:
            if not await reset(self.smtp, timeout=self._pool.reset_timeout):
                self.discard()
                raise SmtpError(
                    "smtp.connection_lost", f"RSET failed before the {what}", "mail", None, LOST_BEFORE_DOT_HINT
                )
            self._dirty = False

    async def transmit(
        self, *, sender: str, recipients: Sequence[str], message: bytes, then: Outgoing | None = None
    ) -> ServerReply:
        """Send one message (``client.transmit``); returns the reply to the final dot.

        Raises ``SmtpError``. A connection lost before the final dot is ``smtp.connection_lost`` at the
        stage it broke (transient); lost or timed out after it, stage ``dot`` (see ``delivery_unknown``).
        Errors without a reply, 421 and lost connections discard the connection; a refusal with a reply
        keeps it (RSET before the next transaction; none after a refused final dot, which ends the
        transaction). ``then``: the message sent next on this connection, without a wait, whose envelope
        rides with this one's final dot (``client.transmit``); if it is not sent next here, the connection
        is closed when the lease ends.
        """
        await self._ready("next message")
        try:
            reply = await transmit(self.smtp, sender=sender, recipients=recipients, message=message, then=then)
        except SmtpError as exc:
            error = exc
        except BaseException:  # cancellation or a bug: the conversation is in an unknown state
            self.discard()
            raise
        else:
            self.messages += 1
            self.last_used = time.monotonic()
            if not self.smtp.is_connected:  # what followed the dot broke: the next message needs another
                self.discard()
            return reply
        if error.reply is None and error.code == "smtp.rejected" and not self.smtp.is_connected:
            error = _connection_lost(error)
        if _keeps_connection(error, self.smtp):
            self._dirty = error.stage != "dot"  # the final dot's reply, even a refusal, ends the transaction
        else:
            self.discard()
        raise error

    async def probe(self, *, sender: str, recipient: str) -> SmtpError | None:
        """Whether the server would take mail for ``recipient`` (``transaction.probe_recipient``): the
        refusal, or None. Nothing is sent; the connection stays usable unless the probe failed."""
        await self._ready("probe")
        try:
            answer = await probe_recipient(self.smtp, sender=sender, recipient=recipient)
        except BaseException:
            self.discard()
            raise
        if not self.smtp.is_connected:
            self.discard()
        return answer


@dataclass(eq=False)
class _Inbox:
    limit: int
    version: int
    leased: int = 0  # leases held, including connections being opened for them
    closing: int = 0  # connections being closed politely (QUIT), still counted against the limit
    idle: list[PooledConnection] = field(default_factory=list)  # most recently used last
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    touched: float = field(default_factory=time.monotonic)

    @property
    def open(self) -> int:
        return self.leased + len(self.idle) + self.closing


class SmtpPool:
    """Bounded, reusable SMTP connections per inbox for one worker process (see the module docstring).

    ``acquire_timeout``: how long a lease waits for room under ``max_connections``; ``idle_timeout``: an
    idle connection older than this is closed by the sweep (every ``sweep_interval`` seconds, a background
    task started on first use or by ``start()``, stopped by ``close()``); ``reset_timeout`` bounds the RSET
    before reuse and ``quit_timeout`` the QUIT of a connection closed while healthy.
    """

    def __init__(
        self,
        net: NetContext,
        *,
        acquire_timeout: float = 30.0,
        idle_timeout: float = 30.0,
        sweep_interval: float | None = None,
        reset_timeout: float = 5.0,
        quit_timeout: float = 2.0,
    ) -> None:
        if acquire_timeout < 0 or idle_timeout <= 0:
            raise ValueError("acquire_timeout must be >= 0 and idle_timeout > 0")
        self.net = net
        self.acquire_timeout = acquire_timeout
        self.idle_timeout = idle_timeout
        self.sweep_interval = sweep_interval if sweep_interval is not None else max(0.05, min(idle_timeout / 4, 5.0))
        self.reset_timeout = min(reset_timeout, net.command_timeout)
        self.quit_timeout = quit_timeout
        self.metrics = PoolMetrics()
        self._inboxes: dict[str, _Inbox] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the idle sweep (also done on first use)."""
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._closed:
            raise PoolClosed("the SMTP pool is closed")
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="smtp-pool-sweep")

    async def close(self) -> None:
        """Close every idle connection (QUIT), stop the sweep, refuse new leases.

        Leases in flight are not interrupted; their connections are closed when they are returned.
        """
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for inbox in self._inboxes.values():
            idle, inbox.idle = inbox.idle, []
            for conn in idle:
                self._retire(inbox, conn)
            self._wake(inbox)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        metrics.pool_connections(*self.totals())

    async def __aenter__(self) -> SmtpPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- leases ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(
        self, key: PoolKey, server: SmtpServer, *, max_connections: int
    ) -> AsyncIterator[PooledConnection]:
        """Lease a connection of ``key``'s inbox: an idle one after RSET, or a new one when there is room.

        Raises ``PoolTimeout`` (no room within ``acquire_timeout``), ``PoolClosed``, or the ``SmtpError`` of
        a failed connect. An exception leaving the block discards the connection unless it is an
        ``SmtpError`` refusal with a reply (not 421) on a connection that is still up.
        """
        conn = await self._acquire(key, server, max_connections)
        try:
            yield conn
        except BaseException as exc:
            self._release(conn, exc)
            raise
        self._release(conn, None)

    async def send(
        self,
        key: PoolKey,
        server: SmtpServer,
        *,
        max_connections: int,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        before_send: Callable[[], Awaitable[object]] | None = None,
    ) -> ServerReply:
        """Send one message on a pooled connection (see ``PooledConnection.transmit`` for the errors).

        ``before_send`` (e.g. a pacer slot's ``wait_turn``) is awaited once the connection is ready.
        """
        async with self.connection(key, server, max_connections=max_connections) as conn:
            if before_send is not None:
                conn._intact = True  # a pacer that fails or is cancelled leaves the connection as it was
                await before_send()
                conn._intact = False
            return await conn.transmit(sender=sender, recipients=recipients, message=message)

    def stats(self, account_id: str) -> InboxStats:
        inbox = self._inboxes.get(account_id)
        if inbox is None:
            return InboxStats(limit=0, leased=0, idle=0, closing=0)
        return InboxStats(limit=inbox.limit, leased=inbox.leased, idle=len(inbox.idle), closing=inbox.closing)

    async def _acquire(self, key: PoolKey, server: SmtpServer, max_connections: int) -> PooledConnection:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ensure_started()
        inbox = self._inbox(key, max_connections)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.acquire_timeout
        queue_behind = bool(inbox.waiters)  # first come, first served
        while True:
            if self._closed:
                raise PoolClosed("the SMTP pool is closed")
            taken = False if queue_behind else self._take(inbox, key, server)
            if taken is not False:
                break
            queue_behind = False
            waiter: asyncio.Future[None] = loop.create_future()
            inbox.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                self.metrics.acquire_timeouts += 1
                raise PoolTimeout(
                    f"no SMTP connection of inbox {key.account_id} free within {self.acquire_timeout:g} s "
                    f"(max_connections {inbox.limit})"
                ) from None
            finally:
                with contextlib.suppress(ValueError):
                    inbox.waiters.remove(waiter)
        # We hold a slot (inbox.leased counts us) from here: give it back on any failure.
        if inbox.waiters and (inbox.open < inbox.limit or inbox.idle):
            self._wake(inbox)  # more room than this lease needed: let the next waiter check
        try:
            conn = await self._ready(inbox, key, server, taken if isinstance(taken, PooledConnection) else None)
        except BaseException:
            inbox.leased -= 1
            self._wake(inbox)
            raise
        conn._leased = True
        return conn

    def _inbox(self, key: PoolKey, max_connections: int) -> _Inbox:
        inbox = self._inboxes.get(key.account_id)
        if inbox is None:
            inbox = self._inboxes[key.account_id] = _Inbox(limit=max_connections, version=key.credentials_version)
        inbox.limit = max_connections
        inbox.touched = time.monotonic()
        if key.credentials_version > inbox.version:
            inbox.version = key.credentials_version
            stale = [conn for conn in inbox.idle if conn.key.credentials_version < inbox.version]
            inbox.idle = [conn for conn in inbox.idle if conn.key.credentials_version >= inbox.version]
            for conn in stale:
                self.metrics.closed_stale += 1
                self._retire(inbox, conn)
        return inbox

    def _take(self, inbox: _Inbox, key: PoolKey, server: SmtpServer) -> PooledConnection | bool:
        """Reserve a slot: an idle connection of this key and server, True (room to open one) or False."""
        for index in range(len(inbox.idle) - 1, -1, -1):  # most recently used first
            conn = inbox.idle[index]
            if conn.key == key and conn.server == server:
                del inbox.idle[index]
                inbox.leased += 1
                return conn
        if inbox.open < inbox.limit:
            inbox.leased += 1
            return True
        if inbox.idle:  # idle connections only of another key or server config: close one to make room
            self.metrics.closed_stale += 1
            self._retire(inbox, inbox.idle.pop(0))  # wakes us when its QUIT is done
        return False

    async def _ready(
        self, inbox: _Inbox, key: PoolKey, server: SmtpServer, idle: PooledConnection | None
    ) -> PooledConnection:
        if idle is not None:
            if await reset(idle.smtp, timeout=self.reset_timeout):
                self.metrics.reused += 1
                idle.reused = True
                idle._dirty = False
                return idle
            self.metrics.rset_failed += 1
            idle.discard()  # then open a new one in the same slot
        smtp = await connect(server, self.net)
        self.metrics.connections_opened += 1
        transport = smtp.transport
        used = transport.get_extra_info("sslcontext") if transport is not None else None
        if used is not None and used is not self.net.tls:
            self.metrics.tls_contexts_built += 1
        return PooledConnection(self, inbox, key, server, smtp)

    def _release(self, conn: PooledConnection, error: BaseException | None) -> None:
        """End a lease (synchronous, so a cancelled task still gives its slot back)."""
        inbox = conn._inbox
        inbox.leased -= 1
        inbox.touched = time.monotonic()
        conn._leased = False
        conn.reused = False
        intact, conn._intact = conn._intact, False
        if conn.discarded:
            pass
        elif (
            conn.smtp.chained is not None  # an envelope announced for a message that was never sent here
            or not conn.smtp.is_connected
            or (error is not None and not intact and not _keeps_connection(error, conn.smtp))
        ):
            conn.discard()
        elif self._closed:
            self._retire(inbox, conn)
        elif conn.key.credentials_version < inbox.version or inbox.open + 1 > inbox.limit:  # limit lowered
            self.metrics.closed_stale += 1
            self._retire(inbox, conn)
        else:
            if error is not None and not intact:
                conn._dirty = True
            conn.last_used = time.monotonic()
            inbox.idle.append(conn)
        self._wake(inbox)

    # --- closing --------------------------------------------------------------------------------------

    def _retire(self, inbox: _Inbox, conn: PooledConnection) -> None:
        """Close a healthy connection politely in the background; it counts against the limit until closed."""
        inbox.closing += 1
        task = asyncio.get_running_loop().create_task(self._quit(inbox, conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quit(self, inbox: _Inbox, conn: PooledConnection) -> None:
        try:
            await close_gracefully(conn.smtp, timeout=self.quit_timeout)
        finally:
            inbox.closing -= 1
            self._wake(inbox)

    @staticmethod
    def _wake(inbox: _Inbox) -> None:
        for waiter in inbox.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            self.sweep()
            metrics.pool_connections(*self.totals())

    def totals(self) -> tuple[int, int, int]:
        """(leased, idle, closing) connections over every inbox of this pool."""
        inboxes = self._inboxes.values()
        return sum(i.leased for i in inboxes), sum(len(i.idle) for i in inboxes), sum(i.closing for i in inboxes)

    def sweep(self, now: float | None = None) -> None:
        """Close connections idle longer than ``idle_timeout`` or closed by the server; forget unused inboxes."""
        now = time.monotonic() if now is None else now
        for account_id, inbox in list(self._inboxes.items()):
            keep: list[PooledConnection] = []
            for conn in inbox.idle:
                if not conn.smtp.is_connected:
                    conn.discard()
                elif now - conn.last_used >= self.idle_timeout:
                    self.metrics.closed_idle += 1
                    self._retire(inbox, conn)
                else:
                    keep.append(conn)
            if len(keep) != len(inbox.idle):
                inbox.idle = keep
                self._wake(inbox)
            unused = not (inbox.leased or inbox.idle or inbox.closing or inbox.waiters)
            if unused and now - inbox.touched >= self.idle_timeout:
                del self._inboxes[account_id]


__all__ = [
    "InboxStats",
    "PoolClosed",
    "PoolKey",
    "PoolMetrics",
    "PoolTimeout",
    "PooledConnection",
    "SmtpPool",
    "delivery_unknown",
]
