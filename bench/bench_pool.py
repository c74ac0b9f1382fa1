"""Benchmark: pooled SMTP sending vs. a new connection per message, over STARTTLS + AUTH.

The server is aiosmtpd (``tests/servers/smtp_server.py``: STARTTLS required, AUTH after TLS, every
message accepted) in a *separate process*, so its CPU does not share the client's event loop. Postfix's
``smtp-sink`` would be a faster sink but has no TLS at all, and a STARTTLS benchmark must pay for the
handshake; loopback has no network latency, so the gain shown here is the CPU and round trips saved per
message (TCP + greeting + EHLO + STARTTLS handshake + EHLO + AUTH + QUIT), and on real networks, where
each round trip costs tens of milliseconds, the pool gains more.

Sides, each ``MESSAGES`` messages from ``CONCURRENCY`` concurrent senders:

* **pooled**: ``SmtpPool.send`` with ``max_connections=CONCURRENCY`` (RSET before each reuse);
* **new connection per message**: the product's ``client.connect`` + ``transmit`` + QUIT per message,
  on the same shared TLS context (what code without a pool does, minus the context mistake);
* **naive aiosmtplib** (fewer messages, for reference): ``aiosmtplib.SMTP`` without ``tls_context``,
  which builds a new ``SSLContext`` per connection (system CA store included).

Printed per side: messages/s, connections the server accepted, TLS contexts built in this process
(counted by wrapping ``ssl.SSLContext.__new__``), and the pooled/new-connection ratio (target >= 3x).

Run: ``make bench`` (or ``.venv/bin/python bench/bench_pool.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.certs import make_test_certs
from tests.servers.smtp_server import TestSmtpServer

from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.egress import EgressPolicy, make_resolver
from nimbus_api.kit.net import NetContext, make_tls_context
from nimbus_api.smtp.client import SmtpServer, close_gracefully, connect, transmit
from nimbus_api.smtp.pool import PoolKey, SmtpPool

ROUNDS = 3
MESSAGES = 400  # per side and round
WARMUP = 40  # untimed messages per side first: imports, first handshakes
NAIVE_MESSAGES = 100
CONCURRENCY = 4
TARGET_RATIO = 3.0
USER, PASSWORD = "bench", "bench-Pa55word"
SENDER, RECIPIENT = "bench@example.test", "sink@example.test"
MESSAGE = (
    b"From: bench@example.test\r\nTo: sink@example.test\r\nSubject: pool benchmark\r\n\r\n" + b"Hello there.\r\n" * 40
)


# --- the server process ----------------------------------------------------------------------------


async def serve(cert_dir: Path) -> None:
    """``--serve DIR``: run the STARTTLS server, print its port, answer ``stats`` lines on stdin with JSON."""
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    certs = make_test_certs(cert_dir)
    server = await TestSmtpServer(
        users={USER: PASSWORD}, tls_context=certs.server_context(), require_starttls=True
    ).start()
    print(json.dumps({"port": server.port}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stats":
            stats = {"connections": server.connections_total, "messages": len(server.messages)}
            server.messages.clear()  # keep the server's memory flat
            print(json.dumps(stats), flush=True)
    await server.stop()


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.port = 0
        self._last = {"connections": 0, "messages": 0}

    @classmethod
    async def start(cls, cert_dir: Path) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            str(cert_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        server = cls(process)
        server.port = (await server._read())["port"]
        return server

    async def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        return dict(json.loads(line))

    async def delta(self) -> dict[str, int]:
        """Connections and messages since the previous call."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"stats\n")
        await self.process.stdin.drain()
        stats = await self._read()
        delta = {"connections": stats["connections"] - self._last["connections"], "messages": stats["messages"]}
        self._last = stats
        return delta

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await asyncio.wait_for(self.process.wait(), 10)


# --- counting TLS contexts -------------------------------------------------------------------------


class ContextCounter:
    """Counts ``ssl.SSLContext`` objects created in this process while installed."""

    def __init__(self) -> None:
        self.count = 0
        self._original = ssl.SSLContext.__new__

    def __enter__(self) -> ContextCounter:
        original = self._original

        def counting(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
            self.count += 1
            return original(cls, *args, **kwargs)

        ssl.SSLContext.__new__ = counting  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc_info: object) -> None:
        ssl.SSLContext.__new__ = self._original  # type: ignore[method-assign]


# --- the sides -------------------------------------------------------------------------------------


@dataclass
class Side:
    """One way of sending: its send function, and what the timed rounds measured."""

    name: str
    send_one: Callable[[], Awaitable[None]]
    messages: int = 0
    rates: list[float] = field(default_factory=list)  # msgs/s per round
    seconds: float = 0.0
    connections: int = 0
    contexts: int = 0

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)

    async def warm_up(self, server: ServerProcess) -> None:
        """Untimed, but its connections and TLS contexts count (the pool opens its connections here)."""
        with ContextCounter() as counter:
            await self._burst(WARMUP)
        stats = await server.delta()
        self.connections += stats["connections"]
        self.contexts += counter.count

    async def round(self, server: ServerProcess, total: int) -> None:
        with ContextCounter() as counter:
            started = time.perf_counter()
            await self._burst(total)
            seconds = time.perf_counter() - started
        stats = await server.delta()
        if stats["messages"] != total:
            raise SystemExit(f"{self.name}: the server accepted {stats['messages']} of {total} messages")
        self.messages += total
        self.seconds += seconds
        self.rates.append(total / seconds)
        self.connections += stats["connections"]
        self.contexts += counter.count
        print(
            f"  {self.name}: {total} messages in {seconds:.2f} s = {total / seconds:.0f} msgs/s, "
            f"{stats['connections']} connections opened, {counter.count} TLS contexts built",
            flush=True,
        )

    async def _burst(self, total: int) -> None:
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                await self.send_one()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def context_cpu_ms(rounds: int = 10) -> float:
    """CPU per ``ssl.create_default_context()`` (loads the system CA store), as aiosmtplib does per connection."""
    started = time.process_time()
    for _ in range(rounds):
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    return (time.process_time() - started) / rounds * 1000


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = await ServerProcess.start(Path(tmp) / "certs")
        try:
            ca_file = Path(tmp) / "certs" / "ca.pem"
            net = NetContext(
                policy=EgressPolicy.from_entries(["127.0.0.0/8", f":{server.port}"]),
                resolver=make_resolver(["127.0.0.1:53"], timeout=1.0),  # unused: the host is an IP literal
                tls=make_tls_context(ca_file),  # the process's one shared context, built once up front
                connect_timeout=10,
                command_timeout=10,
            )
            account = SmtpServer("127.0.0.1", server.port, "starttls", USER, Secret(PASSWORD))
            pool = SmtpPool(net)
            key = PoolKey("bench-inbox", 1)

            async def pooled() -> None:
                await pool.send(
                    key, account, max_connections=CONCURRENCY, sender=SENDER, recipients=[RECIPIENT], message=MESSAGE
                )

            async def fresh() -> None:  # product code, shared context, a new connection per message
                conn = await connect(account, net)
                try:
                    await transmit(conn, sender=SENDER, recipients=[RECIPIENT], message=MESSAGE)
                finally:
                    await close_gracefully(conn)

            async def naive() -> None:  # aiosmtplib without tls_context: a new SSLContext per connection
                smtp = aiosmtplib.SMTP(
                    hostname="127.0.0.1", port=server.port, start_tls=True, cert_bundle=str(ca_file), timeout=10
                )
                async with smtp:
                    await smtp.login(USER, PASSWORD)
                    await smtp.sendmail(SENDER, [RECIPIENT], MESSAGE)

            sides = [
                Side(f"pooled (max_connections {CONCURRENCY})", pooled),
                Side("new connection per message", fresh),
                Side("naive aiosmtplib, own context", naive),
            ]
            pooled_side, fresh_side, naive_side = sides
            print(
                f"STARTTLS + AUTH to aiosmtpd (own process), {CONCURRENCY} concurrent senders; {ROUNDS} rounds of "
                f"{MESSAGES} messages per side, alternating (naive: one round of {NAIVE_MESSAGES}); "
                f"{WARMUP} warm-up messages per side first",
                flush=True,
            )
            for side in sides:
                await side.warm_up(server)
            for number in range(1, ROUNDS + 1):
                print(f"round {number}/{ROUNDS}", flush=True)
                await pooled_side.round(server, MESSAGES)
                await fresh_side.round(server, MESSAGES)
            await naive_side.round(server, NAIVE_MESSAGES)
            await pool.close()
        finally:
            await server.stop()

    print(f"connections and TLS contexts include the {WARMUP} warm-up messages of each side")
    print(f"{'side':32} {'msgs':>5} {'seconds':>8} {'median msgs/s':>14} {'conns opened':>13} {'TLS ctx built':>14}")
    for side in sides:
        print(
            f"{side.name:32} {side.messages:5d} {side.seconds:8.2f} {side.median_rate:14.1f} "
            f"{side.connections:13d} {side.contexts:14d}"
        )
    m = pool.metrics
    print(
        f"pool metrics: connections_opened {m.connections_opened}, reused {m.reused}, discarded {m.discarded}, "
        f"tls_contexts_built {m.tls_contexts_built}"
    )
    ratio = pooled_side.median_rate / fresh_side.median_rate
    print(f"ratio pooled / new connection per message (median rates): {ratio:.2f}x (target >= {TARGET_RATIO:g}x)")
    print(f"one client SSLContext (create_default_context) costs {context_cpu_ms():.1f} ms CPU here")
    if pooled_side.contexts or m.tls_contexts_built:  # an invariant: fails everywhere
        print("FAILED: the pool built a TLS context of its own")
        return 1
    if ratio < TARGET_RATIO:
        # A speed ratio on shared cores: reported, enforced with NIMBUS_BENCH_STRICT=1.
        print("TARGET MISSED: pooled sending is not >= 3x the baseline on this machine")
        return 1 if os.environ.get("NIMBUS_BENCH_STRICT") else 0
    print("OK")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(serve(Path(sys.argv[2])))
    else:
        sys.exit(asyncio.run(main()))
