"""The webhook receiver of ``bench_webhooks.py``: a real HTTP/1.1 server on loopback, in its own process.

A minimal HTTP/1.1 server on an ``asyncio.Protocol`` (uvloop when installed): requests with a
``Content-Length`` body, keep-alive, one request at a time per connection (what httpcore and httpx send).
It is deliberately lean so that the receiver is not what limits either side of the comparison: the hot
path only parses the request, records ``(path, webhook-id, webhook-timestamp, webhook-signature, body,
time.time())`` and answers ``200 ok``. Signatures are verified afterwards (``finish``), outside the
measured windows, with ``standardwebhooks.webhooks.Webhook(secret).verify(body, headers)``.

A path can be told to stall: each request to it is recorded on arrival and answered only after the
given delay (or at once when the stall is lifted, which releases every request it holds).

The process is driven over a ``multiprocessing`` pipe; each command gets one answer:

* ``("reset",)``: forget what was received (every phase starts from zero);
* ``("counts",)``: ``{path: (requests, distinct webhook-ids, last receipt time)}``;
* ``("stall", path, seconds)``: 0 lifts the stall and answers the requests held;
* ``("finish", {path: secret})``: verify every request received since the reset; per path, the distinct
  ids, the request count, the bad signatures (count and a sample), and the latencies ``receipt -
  data.committed_at`` of events that carry a commit time;
* ``("quit",)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from standardwebhooks.webhooks import Webhook

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024


@dataclass
class Record:
    path: str
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    at: float


@dataclass
class PathCounts:
    requests: int = 0
    ids: set[str] = field(default_factory=set)
    last_at: float = 0.0


class State:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.counts: dict[str, PathCounts] = {}
        self.stalls: dict[str, float] = {}
        self.held: dict[asyncio.TimerHandle, HttpProtocol] = {}

    def reset(self) -> None:
        self.records.clear()
        self.counts.clear()

    def received(self, record: Record) -> None:
        self.records.append(record)
        counts = self.counts.get(record.path)
        if counts is None:
            counts = self.counts[record.path] = PathCounts()
        counts.requests += 1
        counts.ids.add(record.webhook_id)
        counts.last_at = record.at

    def stall(self, path: str, seconds: float) -> None:
        if seconds > 0:
            self.stalls[path] = seconds
            return
        self.stalls.pop(path, None)
        held, self.held = self.held, {}
        for handle, protocol in held.items():
            handle.cancel()
            protocol.answer(None)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a stalled request is not answered yet: later bytes wait for it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.process()

    def process(self) -> None:
        while not self.waiting and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.fail()
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            try:
                _method, target, _version = lines[0].split(b" ", 2)
                headers: dict[bytes, bytes] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                self.fail()
                return
            if b"transfer-encoding" in headers:
                self.fail()
                return
            start = end + 4
            if len(self.buffer) < start + length:
                return
            body = bytes(self.buffer[start : start + length])
            del self.buffer[: start + length]
            path = target.decode("latin-1")
            self.state.received(
                Record(
                    path=path,
                    webhook_id=headers.get(b"webhook-id", b"").decode("latin-1"),
                    timestamp=headers.get(b"webhook-timestamp", b"").decode("latin-1"),
                    signature=headers.get(b"webhook-signature", b"").decode("latin-1"),
                    body=body,
                    at=time.time(),
                )
            )
            delay = self.state.stalls.get(path)
            if delay:
                self.waiting = True
                loop = asyncio.get_running_loop()
                box: list[asyncio.TimerHandle] = []

                def later(box: list[asyncio.TimerHandle] = box) -> None:
                    self.state.held.pop(box[0], None)
                    self.answer(None)

                box.append(loop.call_later(delay, later))
                self.state.held[box[0]] = self
                return
            self.transport.write(RESPONSE)

    def answer(self, _unused: None) -> None:
        self.waiting = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)
            self.process()

    def fail(self) -> None:
        if self.transport is not None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()


def finish(state: State, secrets: dict[str, str]) -> dict[str, Any]:
    """Verify every request received since the reset; what each path got."""
    hooks = {path: Webhook(secret) for path, secret in secrets.items()}
    out: dict[str, Any] = {}
    for record in state.records:
        got = out.setdefault(
            record.path, {"ids": set(), "requests": 0, "bad": 0, "bad_sample": None, "latencies": [], "unknown": 0}
        )
        got["requests"] += 1
        got["ids"].add(record.webhook_id)
        hook = hooks.get(record.path)
        if hook is None:
            got["unknown"] += 1
            continue
        headers = {
            "webhook-id": record.webhook_id,
            "webhook-timestamp": record.timestamp,
            "webhook-signature": record.signature,
        }
        try:
            payload = hook.verify(record.body, headers)
        except Exception as exc:
            got["bad"] += 1
            got["bad_sample"] = got["bad_sample"] or f"{type(exc).__name__}: {exc} ({record.webhook_id})"
            payload = json.loads(record.body)
        data = payload.get("data") if isinstance(payload, dict) else None
        committed = data.get("committed_at") if isinstance(data, dict) else None
        if isinstance(committed, int | float):
            got["latencies"].append(record.at - committed)
    return out


async def serve(control: Connection) -> None:
    state = State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(state), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    control.send(("ready", port))
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def readable() -> None:
        while control.poll():
            try:
                commands.put_nowait(control.recv())
            except EOFError:
                commands.put_nowait(("quit",))
                loop.remove_reader(control.fileno())
                return

    loop.add_reader(control.fileno(), readable)
    while True:
        command = await commands.get()
        kind = command[0]
        if kind == "reset":
            state.reset()
            control.send(("ok",))
        elif kind == "counts":
            control.send({p: (c.requests, len(c.ids), c.last_at) for p, c in state.counts.items()})
        elif kind == "stall":
            state.stall(command[1], command[2])
            control.send(("ok",))
        elif kind == "finish":
            os.set_blocking(control.fileno(), True)  # a large answer: the loop's reader made the pipe non-blocking
            control.send(finish(state, command[1]))
        elif kind == "quit":
            state.stall("", 0)
            for path in list(state.stalls):
                state.stall(path, 0)
            server.close()
            with contextlib.suppress(Exception):
                control.send(("bye",))
            return


def run(control: Connection) -> None:
    """The receiver process's entry point."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(control))
    else:
        uvloop.run(serve(control))
