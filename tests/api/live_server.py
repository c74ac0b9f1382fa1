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
