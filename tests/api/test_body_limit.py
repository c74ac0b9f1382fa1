"""Bodies over the limit are refused with 413 ``request.too_large`` before they are read: at once on a
declared Content-Length, at the limit on a streamed body; the contact imports have their own limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from nimbus_api.api.app import IMPORT_PATHS, create_app
from nimbus_api.api.openapi_export import export_openapi
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from tests.api.live_server import HttpImpl, live_server, raw_exchange, stream_until_answered
from tests.conftest import Tenant

PROBLEM = "application/problem+json"
MB = 1_048_576
CHUNK = 64 * 1024


def _assert_too_large(r: httpx.Response, limit: int) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["code"] == "request.too_large"
    assert str(limit) in body["detail"] and body["max_body_bytes"] == limit
    assert r.headers["connection"] == "close"


class Chunks:
    """A streamed (chunked) body that counts how much of it was read."""

    def __init__(self, total: int, prefix: bytes = b'{"first_name": "') -> None:
        self.total = total
        self.prefix = prefix
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        first = True
        while self.sent < self.total:
            chunk = self.prefix + b"a" * (CHUNK - len(self.prefix)) if first else b"a" * CHUNK
            first = False
            self.sent += len(chunk)
            yield chunk


async def _contacts(tenant: Tenant) -> list[object]:
    r = await tenant.client.get("/v1/contacts")
    assert r.status_code == 200
    data: list[object] = r.json()["data"]
    return data


async def test_declared_length_over_the_default_limit_is_413_and_nothing_is_saved(tenant: Tenant) -> None:
    body = json.dumps({"email": "big@example.org", "first_name": "x" * MB}).encode()
    r = await tenant.client.post("/v1/contacts", content=body, headers={"content-type": "application/json"})
    _assert_too_large(r, MB)
    assert await _contacts(tenant) == []


async def test_streamed_body_is_stopped_at_the_limit(tenant: Tenant) -> None:
    stream = Chunks(50 * MB)
    r = await tenant.client.post("/v1/contacts", content=stream, headers={"content-type": "application/json"})
    _assert_too_large(r, MB)
    # Read up to the limit and not further: the rest of the 50 MB was never pulled from the client.
    assert stream.sent <= MB + CHUNK
    assert await _contacts(tenant) == []


async def test_limits_come_from_the_settings_and_the_imports_take_their_own(
    settings: Settings, app_state: AppState, tenant: Tenant
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048, "max_import_body_bytes": 16_384})
    app = create_app(small, state=app_state)
    headers = {"Authorization": f"Bearer {tenant.token}"}
    transport = httpx.ASGITransport(app=app)
    rows = [{"email": f"row{i}@example.org", "first_name": "n" * 40} for i in range(60)]  # ~5 KB
    async with httpx.AsyncClient(transport=transport, base_url="http://nimbus.test", headers=headers) as client:
        too_big = await client.post("/v1/contacts", json={"email": "one@example.org", "first_name": "n" * 4000})
        _assert_too_large(too_big, 2048)
        imported = await client.post("/v1/contacts/import", json={"contacts": rows})
        assert imported.status_code == 200, imported.text
        assert imported.json()["created"] == 60
        csv = b"email,first_name\n" + b"".join(b"csv%d@example.org,%s\n" % (i, b"c" * 300) for i in range(60))
        over_csv = await client.post("/v1/contacts/import/csv", files={"file": ("c.csv", csv, "text/csv")})
        _assert_too_large(over_csv, 16_384)
    listed = {c["email"] for c in await _contacts_all(tenant)}  # type: ignore[index]
    assert "one@example.org" not in listed
    assert not any(e.startswith("csv") for e in listed)


async def _contacts_all(tenant: Tenant) -> list[object]:
    r = await tenant.client.get("/v1/contacts", params={"limit": 200})
    assert r.status_code == 200
    data: list[object] = r.json()["data"]
    return data


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_50_mb_declared_is_refused_by_a_real_server_without_reading_it(
    settings: Settings, app_state: AppState, tenant: Tenant, http: HttpImpl
) -> None:
    """Content-Length says 50 MB, 64 KB follow: the 413 comes at once and the server closes the
    connection (it would otherwise wait for the other 49.9 MB)."""
    app = create_app(settings, state=app_state)
    head = (
        b"POST /v1/contacts HTTP/1.1\r\nHost: nimbus.test\r\n"
        b"Authorization: Bearer " + tenant.token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(50 * MB).encode() + b"\r\n\r\n"
    )
    async with live_server(app, http) as (host, port):
        received, closed_by_server = await raw_exchange(host, port, head, b'{"email": "' + b"a" * CHUNK)
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 ")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in headers.lower()
    assert json.loads(body)["code"] == "request.too_large"
    assert closed_by_server
    assert await _contacts(tenant) == []


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_50_mb_streamed_to_a_real_server_is_cut_at_the_limit(
    settings: Settings, app_state: AppState, tenant: Tenant, http: HttpImpl
) -> None:
    """A chunked body with no length: the server reads up to the limit, answers 413 and closes; the
    client saw the answer long before it could have sent 50 MB."""
    app = create_app(settings, state=app_state)
    head = (
        b"POST /v1/contacts HTTP/1.1\r\nHost: nimbus.test\r\n"
        b"Authorization: Bearer " + tenant.token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    async with live_server(app, http) as (host, port):
        received, sent = await asyncio.to_thread(stream_until_answered, host, port, head, b"a" * CHUNK, 50 * MB)
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 ")
    body = rest.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["code"] == "request.too_large"
    assert MB < sent < 50 * MB
    assert await _contacts(tenant) == []


def test_every_operation_with_a_body_declares_400_413_415() -> None:
    document = json.loads(export_openapi())
    with_body = 0
    for path, item in document["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "request.malformed" in responses["400"]["description"], f"{method} {path}"
            if "requestBody" not in op:
                continue
            with_body += 1
            assert "request.too_large" in responses["413"]["description"], f"{method} {path}"
            assert "request.unsupported_media_type" in responses["415"]["description"], f"{method} {path}"
            limit = "20 MB" if path in IMPORT_PATHS else "1 MB"
            assert limit in responses["413"]["description"], f"{method} {path}"
    assert with_body >= 12
