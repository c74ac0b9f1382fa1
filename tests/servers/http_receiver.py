"""A real HTTP/1.1 receiver on loopback (h11 over asyncio streams, optionally TLS) for webhook tests.

Each request is answered by ``behaviour(request)``, which returns a ``Reply`` (status, headers, body,
a delay before answering) or ``None`` to drop the connection unanswered. Every accepted connection and
every complete request is recorded, so a test can prove that nothing connected (``connections == 0``)
or count what arrived, with its exact body bytes and headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11


@dataclass(frozen=True)
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    delay: float = 0.0


Behaviour = Callable[[Received], Reply | None]


def ok(_request: Received) -> Reply:
    return Reply()


@dataclass
class HttpReceiver:
    behaviour: Behaviour = ok
    tls: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> HttpReceiver:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> HttpReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} of {count} requests arrived in {timeout} s")
            await asyncio.sleep(0.01)
        return self.requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    return
                received = Received(
                    method=request.method.decode(),
                    target=request.target.decode(),
                    headers={k.decode().lower(): v.decode("latin-1") for k, v in request.headers},
                    body=body,
                    at=time.time(),
                )
                self.requests.append(received)
                reply = self.behaviour(received)
                if reply is None:
                    return
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                headers = [("content-length", str(len(reply.body))), *reply.headers]
                writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)) or b"")
                writer.write(conn.send(h11.Data(data=reply.body)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and request is None:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""
