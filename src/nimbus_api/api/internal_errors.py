"""An unexpected error answers 500 ``internal_error`` and leaves the connection usable (pure ASGI).

Starlette's ``ServerErrorMiddleware`` answers the 500 and then re-raises, so that the server can log
the error; uvicorn then closes the connection, as it must when it cannot know whether the answer was
complete, and a keep-alive client's next request on it fails. This middleware sits inside it: it logs
the error with its traceback (the method and route, never the body, the query or the path's values),
answers the 500 if nothing was sent yet, and returns normally once a complete answer went out. Only an
answer cut in the middle is re-raised: then the connection must be closed.

An error that is a store's outage (``kit.outage``: PostgreSQL or Redis restarting, failing over,
refusing connections) is not a bug: it answers 503 ``service_unavailable`` with ``Retry-After`` and
is logged as a warning without a traceback. The request changed nothing (its transaction did not
commit), and the same request succeeds once the store is back: the pools replace broken connections
by themselves.
"""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nimbus_api.api.errors import send_problem
from nimbus_api.api.route_match import resolve
from nimbus_api.kit.outage import outage_of
from nimbus_api.kit.problems import InternalError, ServiceUnavailable

log = structlog.get_logger(__name__)


def _route_of(scope: Scope) -> str:
    """The route's template (``/u/{token}``), not the path: a path can carry a secret."""
    try:
        route = resolve(scope).route
    except Exception:  # logging an error must not raise another
        return "(unknown)"
    return (route.path if route is not None else None) or "(no route)"


RETRY_AFTER_SECONDS = 2
STORE_OUTAGE = ServiceUnavailable(
    "a data store is not reachable; nothing was changed, try again shortly",
    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
)


class InternalErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if outage_of(exc, default="postgres") is not None:
                log.warning(
                    "request_met_store_outage",
                    method=scope.get("method"),
                    route=_route_of(scope),
                    error_type=type(exc).__name__,
                    store=outage_of(exc),
                )
                if not started:
                    await send_problem(STORE_OUTAGE, scope, receive, send)
                    return
                if not complete:
                    raise
                return
            log.error(
                "unhandled_error",
                method=scope.get("method"),
                route=_route_of(scope),
                error_type=type(exc).__name__,
                response_started=started,
                exc_info=exc,
            )
            if not started:
                await send_problem(InternalError(), scope, receive, send)
            elif not complete:
                raise
