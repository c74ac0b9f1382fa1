"""A real uvicorn server on a loopback port for tests about the connection itself (keep-alive, a body
refused before it is read), which an in-process ASGI transport cannot show."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn

HttpImpl = Literal["h11", "httptools"]


@asynccontextmanager
async def live_server(app: Any, http: HttpImpl = "httptools") -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` (its state already set: no lifespan) on 127.0.0.1; yields (host, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http=http, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        await task
        sock.close()


async def raw_exchange(host: str, port: int, head: bytes, body: bytes = b"") -> tuple[bytes, bool]:
    """Send a request head and some body bytes on a fresh socket; read until the server closes it.

    Returns the bytes received and whether the server closed the connection (on its own, while this
    side kept its half open)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + body)
        await writer.drain()
        received = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout=30)
            if not chunk:
                return received, True
            received += chunk
    finally:
        writer.close()


def stream_until_answered(host: str, port: int, head: bytes, chunk: bytes, most: int) -> tuple[bytes, int]:
    """Blocking (run it in a thread): send ``head``, then ``chunk`` as HTTP/1.1 chunks until the server
    answers or ``most`` bytes went out; then read the answer until the server closes. Returns the bytes
    received and how many body bytes were sent.

    A plain socket, because an asyncio client that fails to write stops reading, and so loses an answer
    that a server sent before closing on a body it refused."""
    import select

    sent = 0
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head)
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            while sent < most:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(framed)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        sock.settimeout(30)
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass
    return received, sent
