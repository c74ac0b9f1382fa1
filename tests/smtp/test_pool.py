"""The SMTP pool against real aiosmtpd servers on loopback (STARTTLS + AUTH unless a test says otherwise).

Servers are told to misbehave through their options (``replies``, ``stall_after_dot``) or, for RSET and a
connection dropped mid-transaction, through an aiosmtpd handler hook patched for the length of one test.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.net import NetContext
from nimbus_api.smtp.client import Mode, Outgoing, SmtpServer
from nimbus_api.smtp.errors import SmtpError
from nimbus_api.smtp.pool import PoolClosed, PoolKey, PoolTimeout, SmtpPool, delivery_unknown
from tests.servers import certs as test_certs
from tests.servers import smtp_server

from .conftest import MakeNet, Serve

ADDRESS = "ada@example.test"
PASSWORD = "s3cret-Pa55word"
NEW_PASSWORD = "n3w-Pa55word"
USERS = {"ada": PASSWORD, "ada-new": NEW_PASSWORD}
MESSAGE = b"From: ada@example.test\r\nTo: bob@example.test\r\nSubject: pooled\r\n\r\nOne line.\r\n"
KEY = PoolKey("acct-1", 1)

MakePool = Callable[..., SmtpPool]


def account(port: int, mode: Mode = "starttls", *, username: str = "ada", password: str = PASSWORD) -> SmtpServer:
    return SmtpServer(host="mail.example.test", port=port, mode=mode, username=username, password=Secret(password))


def starttls(certs: test_certs.TestCerts, **options: Any) -> dict[str, Any]:
    return {"users": USERS, "tls_context": certs.server_context(), "require_starttls": True, **options}


@pytest.fixture
async def make_pool() -> AsyncIterator[MakePool]:
    pools: list[SmtpPool] = []

    def factory(net: NetContext, **options: Any) -> SmtpPool:
        pool = SmtpPool(net, **options)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        await pool.close()


async def send(pool: SmtpPool, server: SmtpServer, key: PoolKey = KEY, max_connections: int = 2) -> str:
    reply = await pool.send(
        key, server, max_connections=max_connections, sender=ADDRESS, recipients=["bob@example.test"], message=MESSAGE
    )
    return reply.text


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - server state without an event to wait on
            await asyncio.sleep(0.01)


# --- reuse and bounds ------------------------------------------------------------------------------


async def test_messages_reuse_one_connection_with_rset_between(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    replies = [await send(pool, account(server.port)) for _ in range(5)]

    assert replies == [f"OK queued as T{i}" for i in range(1, 6)]
    assert server.connections_total == 1
    assert len(server.messages) == 5
    transactions = [verb for verb in server.commands if verb in ("MAIL", "RSET")]
    assert transactions == ["MAIL"] + ["RSET", "MAIL"] * 4
    assert [verb for verb in server.commands if verb in ("EHLO", "STARTTLS", "AUTH")] == [
        "EHLO",
        "STARTTLS",
        "EHLO",
        "AUTH",
    ]
    m = pool.metrics
    assert (m.connections_opened, m.reused, m.discarded, m.tls_contexts_built) == (1, 4, 0, 0)
    assert pool.stats(KEY.account_id).idle == 1


async def test_messages_chained_in_one_lease_share_their_writes_and_need_no_reset(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    messages = [Outgoing(ADDRESS, [f"r{i}@example.test"], MESSAGE) for i in range(3)]
    async with pool.connection(KEY, account(server.port), max_connections=1) as conn:
        for i, m in enumerate(messages):
            then = messages[i + 1] if i + 1 < len(messages) else None
            await conn.transmit(sender=m.sender, recipients=m.recipients, message=m.message, then=then)
    assert len(server.messages) == 3
    assert [verb for verb in server.commands if verb in ("MAIL", "RSET")] == ["MAIL"] * 3
    assert (pool.metrics.discarded, pool.stats(KEY.account_id).idle) == (0, 1)


async def test_a_lease_that_ends_with_an_announced_envelope_discards_its_connection(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    first, second = (Outgoing(ADDRESS, [f"r{i}@example.test"], MESSAGE) for i in range(2))
    async with pool.connection(KEY, account(server.port), max_connections=1) as conn:
        await conn.transmit(sender=first.sender, recipients=first.recipients, message=first.message, then=second)
    # The server waits for the second message's content: that connection must never be reused.
    assert pool.metrics.discarded == 1
    assert await send(pool, account(server.port)) == "OK queued as T2"
    assert (pool.metrics.connections_opened, len(server.messages)) == (2, 2)


async def test_max_connections_bounds_concurrent_sends(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    seen: list[int] = []

    async def deliver(envelope: Envelope) -> None:
        seen.append(server.open_connections)
        await asyncio.sleep(0.05)  # keep the transaction open so the sends really overlap

    server = await serve(**starttls(certs), deliver=deliver)
    pool = make_pool(make_net(server.port))
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.open_connections)
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    try:
        replies = await asyncio.gather(*(send(pool, account(server.port), max_connections=2) for _ in range(10)))
    finally:
        watcher.cancel()
    assert len(replies) == len(server.messages) == 10
    assert peak == 2
    assert max(seen) <= 2
    assert server.connections_total == 2
    assert pool.metrics.connections_opened == 2
    assert pool.metrics.reused == 8
    assert pool.stats(KEY.account_id).open == 2


async def test_acquire_timeout_when_every_connection_is_busy(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port), acquire_timeout=0.2)
    async with pool.connection(KEY, account(server.port), max_connections=1):
        with pytest.raises(PoolTimeout):
            await send(pool, account(server.port), max_connections=1)
    assert pool.metrics.acquire_timeouts == 1
    assert await send(pool, account(server.port), max_connections=1) == "OK queued as T1"  # the slot came back
    assert server.connections_total == 1


# --- reconnecting ----------------------------------------------------------------------------------


async def test_reconnects_after_421(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs, replies={"MAIL": "421 4.7.0 Too many messages, closing connection"}))
    pool = make_pool(make_net(server.port))
    with pytest.raises(SmtpError) as info:
        await send(pool, account(server.port))
    error = info.value
    assert (error.code, error.stage) == ("smtp.throttled", "mail")
    assert error.reply is not None and error.reply.code == 421
    assert not delivery_unknown(error)
    assert pool.metrics.discarded == 1
    assert pool.stats(KEY.account_id).open == 0

    del server.replies["MAIL"]
    assert await send(pool, account(server.port)) == "OK queued as T1"
    assert server.connections_total == 2
    await until(lambda: server.open_connections == 1)


async def test_reconnects_when_the_server_dropped_an_idle_connection(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    first = await serve(**starttls(certs))
    port = first.port
    pool = make_pool(make_net(port))
    await send(pool, account(port))
    await first.stop()  # drops every connection, like a server restart
    second = await serve(**starttls(certs), port=port)

    assert await send(pool, account(port)) == "OK queued as T1"
    assert second.connections_total == 1
    assert pool.metrics.connections_opened == 2
    assert pool.metrics.discarded == 1


async def test_rset_failure_discards_and_reconnects(
    serve: Serve,
    make_net: MakeNet,
    make_pool: MakePool,
    certs: test_certs.TestCerts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refuse = False

    async def handle_RSET(self: Any, server: SMTP, session: Session, envelope: Envelope) -> Any:
        return "451 4.3.0 Cannot reset now" if refuse else MISSING

    monkeypatch.setattr(smtp_server._Handler, "handle_RSET", handle_RSET, raising=False)
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    await send(pool, account(server.port))
    refuse = True
    assert await send(pool, account(server.port)) == "OK queued as T2"
    refuse = False
    assert await send(pool, account(server.port)) == "OK queued as T3"  # RSET works again: reused

    assert server.connections_total == 2
    m = pool.metrics
    assert (m.connections_opened, m.rset_failed, m.discarded, m.reused) == (2, 1, 1, 1)


async def test_refusal_with_a_reply_keeps_the_connection(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs, replies={"RCPT": "550 5.1.1 No such user"}))
    pool = make_pool(make_net(server.port))
    with pytest.raises(SmtpError) as info:
        await send(pool, account(server.port))
    assert (info.value.code, info.value.stage) == ("smtp.recipient_rejected", "rcpt")
    del server.replies["RCPT"]
    assert await send(pool, account(server.port)) == "OK queued as T1"
    assert server.connections_total == 1
    assert server.commands[-4:-2] == ["RSET", "MAIL"]  # the half-done transaction was reset first


async def test_an_exception_in_the_block_discards_the_connection(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    with pytest.raises(LookupError):
        async with pool.connection(KEY, account(server.port), max_connections=1):
            raise LookupError("the caller's own failure")
    assert pool.metrics.discarded == 1
    await send(pool, account(server.port), max_connections=1)
    assert server.connections_total == 2


async def test_a_failing_before_send_gives_the_connection_back_intact(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))

    async def pacer_down() -> None:
        raise ConnectionError("Redis is unreachable")

    with pytest.raises(ConnectionError):
        await pool.send(
            KEY,
            account(server.port),
            max_connections=1,
            sender=ADDRESS,
            recipients=[ADDRESS],
            message=MESSAGE,
            before_send=pacer_down,
        )
    turns: list[str] = []

    async def turn() -> None:
        turns.append("turn")

    await pool.send(
        KEY,
        account(server.port),
        max_connections=1,
        sender=ADDRESS,
        recipients=[ADDRESS],
        message=MESSAGE,
        before_send=turn,
    )
    assert turns == ["turn"]
    assert server.connections_total == 1
    assert (pool.metrics.discarded, pool.metrics.reused) == (0, 1)
    assert len(server.messages) == 1


async def test_several_messages_on_one_lease(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs, replies={"RCPT": "550 5.1.1 No such user"}))
    pool = make_pool(make_net(server.port))
    async with pool.connection(KEY, account(server.port), max_connections=1) as conn:
        with pytest.raises(SmtpError):
            await conn.transmit(sender=ADDRESS, recipients=["nobody@example.test"], message=MESSAGE)
        del server.replies["RCPT"]
        await conn.transmit(sender=ADDRESS, recipients=["bob@example.test"], message=MESSAGE)
        await conn.transmit(sender=ADDRESS, recipients=["bob@example.test"], message=MESSAGE)
    # RSET only after the refused transaction; a completed one needs none.
    assert [v for v in server.commands if v in ("MAIL", "RSET")] == ["MAIL", "RSET", "MAIL", "MAIL"]
    assert conn.messages == 2
    with pytest.raises(RuntimeError):
        await conn.transmit(sender=ADDRESS, recipients=["bob@example.test"], message=MESSAGE)


# --- idle sweep and closing ------------------------------------------------------------------------


async def test_idle_sweep_closes_idle_connections(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port), idle_timeout=0.2, sweep_interval=0.05)
    await send(pool, account(server.port))
    assert server.open_connections == 1
    assert await server.wait_until_idle(2.0)
    assert server.commands[-1] == "QUIT"
    assert pool.metrics.closed_idle == 1
    assert pool.stats(KEY.account_id).open == 0
    await send(pool, account(server.port))
    assert server.connections_total == 2


async def test_close_quits_every_connection_and_refuses_new_leases(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    await asyncio.gather(*(send(pool, account(server.port), max_connections=3) for _ in range(3)))
    assert server.open_connections == 3
    await pool.close()
    assert await server.wait_until_idle(1.0)
    assert server.commands.count("QUIT") == 3
    with pytest.raises(PoolClosed):
        await send(pool, account(server.port))


# --- credentials versions --------------------------------------------------------------------------


async def test_credentials_bump_new_sends_get_a_new_connection_while_in_flight_finishes(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def deliver(envelope: Envelope) -> None:
        if envelope.content is not None and b"in-flight" in envelope.content:
            entered.set()
            await release.wait()

    server = await serve(**starttls(certs), deliver=deliver)
    pool = make_pool(make_net(server.port))
    old = account(server.port)
    new = account(server.port, username="ada-new", password=NEW_PASSWORD)
    v1, v2 = PoolKey("acct-1", 1), PoolKey("acct-1", 2)

    in_flight = asyncio.create_task(
        pool.send(
            v1, old, max_connections=2, sender=ADDRESS, recipients=[ADDRESS], message=b"Subject: in-flight\r\n\r\nx"
        )
    )
    await entered.wait()
    assert await send(pool, new, key=v2) == "OK queued as T2"  # a new connection, logged in with the new login
    assert server.connections_total == 2
    release.set()
    assert (await in_flight).code == 250  # finished on the old connection...
    await until(lambda: server.open_connections == 1)  # ...which was closed when returned, not pooled
    assert pool.metrics.closed_stale == 1

    assert await send(pool, new, key=v2) == "OK queued as T3"
    assert server.connections_total == 2  # the new-version connection is reused
    # A late job with the old version still sends, on a connection that is never pooled.
    assert await send(pool, old, key=v1) == "OK queued as T4"
    await until(lambda: server.open_connections == 1)
    assert server.connections_total == 3
    assert [login for _, login in server.auth_attempts] == ["ada", "ada-new", "ada"]


async def test_credentials_bump_closes_idle_connections_of_the_old_version(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    await send(pool, account(server.port), key=PoolKey("acct-1", 1))
    await send(pool, account(server.port, username="ada-new", password=NEW_PASSWORD), key=PoolKey("acct-1", 2))
    assert server.connections_total == 2
    await until(lambda: server.open_connections == 1)
    assert "QUIT" in server.commands  # the old one was closed politely
    assert pool.metrics.closed_stale == 1
    assert pool.metrics.reused == 0


async def test_another_server_config_replaces_the_idle_connection_within_the_bound(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    await send(pool, account(server.port), max_connections=1)
    other = account(server.port, username="ada-new", password=NEW_PASSWORD)  # same key: a config the key missed
    assert await send(pool, other, max_connections=1) == "OK queued as T2"
    assert server.connections_total == 2
    assert server.commands.index("QUIT") < len(server.commands) - 5  # the old one quit before the new one sent
    assert pool.metrics.closed_stale == 1
    assert pool.stats(KEY.account_id).open == 1


# --- outcomes: lost before vs after the final dot ---------------------------------------------------


async def test_timeout_after_the_final_dot_is_unknown(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs, stall_after_dot=True))
    pool = make_pool(make_net(server.port, command_timeout=0.3))
    with pytest.raises(SmtpError) as info:
        await send(pool, account(server.port))
    assert (info.value.code, info.value.stage) == ("smtp.timeout", "dot")
    assert delivery_unknown(info.value)
    assert pool.metrics.discarded == 1
    assert await server.wait_until_idle(1.0)


async def test_connection_lost_after_the_final_dot_is_unknown(
    serve: Serve, make_net: MakeNet, make_pool: MakePool, certs: test_certs.TestCerts
) -> None:
    server = await serve(**starttls(certs, stall_after_dot=True))
    pool = make_pool(make_net(server.port, command_timeout=5))
    task = asyncio.create_task(send(pool, account(server.port)))
    await until(lambda: server.received.endswith(b"\r\n.\r\n"))  # the whole message and the dot arrived
    await server.stop()  # the server goes away without answering
    with pytest.raises(SmtpError) as info:
        await task
    error = info.value
    assert (error.code, error.stage, error.reply) == ("smtp.connection_lost", "dot", None)
    assert delivery_unknown(error)
    assert error.hint is not None and "Do not resend" in error.hint
    assert pool.metrics.discarded == 1


async def test_connection_lost_before_the_final_dot_is_transient_and_reconnects(
    serve: Serve,
    make_net: MakeNet,
    make_pool: MakePool,
    certs: test_certs.TestCerts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drop = True
    original = smtp_server._Handler.handle_MAIL

    async def handle_MAIL(self: Any, server: SMTP, session: Session, envelope: Envelope, *args: Any) -> Any:
        if drop:
            assert server.transport is not None
            server.transport.abort()
            await asyncio.Event().wait()  # cancelled by aiosmtpd with the connection
        return await original(self, server, session, envelope, *args)

    monkeypatch.setattr(smtp_server._Handler, "handle_MAIL", handle_MAIL)
    server = await serve(**starttls(certs))
    pool = make_pool(make_net(server.port))
    with pytest.raises(SmtpError) as info:
        await send(pool, account(server.port))
    error = info.value
    assert (error.code, error.stage, error.reply) == ("smtp.connection_lost", "mail", None)
    assert not delivery_unknown(error)
    assert pool.metrics.discarded == 1

    drop = False
    assert await send(pool, account(server.port)) == "OK queued as T1"
    assert server.connections_total == 2


# --- TLS contexts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
async def test_the_pool_never_builds_a_tls_context(
    serve: Serve,
    make_net: MakeNet,
    make_pool: MakePool,
    certs: test_certs.TestCerts,
    monkeypatch: pytest.MonkeyPatch,
    mode: Mode,
) -> None:
    options = starttls(certs) if mode == "starttls" else {"users": USERS, "ssl_context": certs.server_context()}
    server = await serve(**options)  # the server's own context is built before counting starts
    net = make_net(server.port)
    built: list[str] = []
    create_default_context = ssl.create_default_context
    original_new = ssl.SSLContext.__new__

    def counting_create(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append("create_default_context")
        return create_default_context(*args, **kwargs)

    def counting_new(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append("SSLContext")
        return original_new(cls, *args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting_create)
    monkeypatch.setattr(ssl.SSLContext, "__new__", counting_new)

    pool = make_pool(net)
    await asyncio.gather(*(send(pool, account(server.port, mode)) for _ in range(4)))
    async with pool.connection(KEY, account(server.port, mode), max_connections=2) as conn:
        transport = conn.smtp.transport
        assert transport is not None
        assert transport.get_extra_info("sslcontext") is net.tls
    assert built == []
    assert pool.metrics.tls_contexts_built == 0
    assert pool.metrics.connections_opened == 2


async def test_pool_validates_arguments(make_net: MakeNet) -> None:
    with pytest.raises(ValueError):
        SmtpPool(make_net(), idle_timeout=0)
    pool = SmtpPool(make_net())
    with pytest.raises(ValueError), contextlib.suppress(PoolClosed):
        async with pool.connection(KEY, account(25), max_connections=0):
            pass
    await pool.close()
