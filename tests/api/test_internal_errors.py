"""An unexpected error is a 500 problem that leaves the keep-alive connection usable, logged with its
traceback and without the request body."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI, Request

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from tests.api.live_server import HttpImpl, live_server
from tests.security.test_canary import Capture

PROBLEM = "application/problem+json"
SECRET_IN_BODY = "body-marker-4e1f9a"


def _app_with_failing_route(settings: Settings, app_state: AppState) -> FastAPI:
    app = create_app(settings, state=app_state)

    async def fail(request: Request) -> dict[str, str]:
        await request.body()
        "zoë@example.org".encode("ascii")  # raises UnicodeEncodeError, as the bug in the issue did
        return {}

    app.add_api_route("/test/fail", fail, methods=["POST"])
    return app


def _local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    port: int = stream.get_extra_info("client_addr")[1]
    return port


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_500_keeps_the_connection_and_the_next_request_succeeds(
    settings: Settings, app_state: AppState, http: HttpImpl
) -> None:
    app = _app_with_failing_route(settings, app_state)
    async with live_server(app, http) as (host, port):
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", limits=limits) as client:
            first = await client.get("/healthz")
            failed = await client.post("/test/fail", json={"note": SECRET_IN_BODY})
            after = await client.get("/healthz")
            ports = {_local_port(first), _local_port(failed), _local_port(after)}
    assert first.status_code == 200
    assert failed.status_code == 500
    assert failed.headers["content-type"] == PROBLEM
    body = failed.json()
    assert body["code"] == "internal_error"
    assert body["type"] == "urn:nimbus:problem:internal_error"
    assert SECRET_IN_BODY not in failed.text
    assert "connection" not in failed.headers or failed.headers["connection"].lower() != "close"
    assert after.status_code == 200
    # The same TCP connection carried all three requests: uvicorn did not close it after the 500.
    assert len(ports) == 1


async def test_500_is_logged_with_traceback_but_not_the_body(
    settings: Settings, app_state: AppState, captured_logs: Capture
) -> None:
    """Logged as the API logs (console and JSON): the traceback, the method and the route's template,
    never the body or the query."""
    app = _app_with_failing_route(settings, app_state)
    logging.getLogger("httpx").disabled = True  # the test's client logs the URL it requested (restored after)
    transport = httpx.ASGITransport(app=app)  # the error does not reach the transport: it was answered
    async with httpx.AsyncClient(transport=transport, base_url="http://nimbus.test") as client:
        r = await client.post("/test/fail?q=query-marker", json={"note": SECRET_IN_BODY})
    assert r.status_code == 500
    assert r.json()["code"] == "internal_error"
    production = captured_logs.production.getvalue()
    assert "unhandled_error" in production
    assert "Traceback" in production and "UnicodeEncodeError" in production
    assert "/test/fail" in production and "POST" in production
    assert SECRET_IN_BODY not in captured_logs.text()
    assert "query-marker" not in captured_logs.text()


async def test_500_after_the_answer_was_sent_is_only_logged(
    settings: Settings, app_state: AppState, captured_logs: Capture
) -> None:
    """An error raised after a complete answer (a background task) leaves that answer as it was."""
    from starlette.background import BackgroundTask
    from starlette.responses import JSONResponse

    app = create_app(settings, state=app_state)

    def explode() -> None:
        raise RuntimeError("after the answer")

    async def answered() -> JSONResponse:
        return JSONResponse({"ok": True}, background=BackgroundTask(explode))

    app.add_api_route("/test/answered", answered, methods=["GET"])
    async with live_server(app) as (host, port), httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        r = await client.get("/test/answered")
        again = await client.get("/healthz")
        same_connection = _local_port(r) == _local_port(again)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert again.status_code == 200 and same_connection
    assert "unhandled_error" in captured_logs.production.getvalue()
    assert "after the answer" in captured_logs.production.getvalue()
