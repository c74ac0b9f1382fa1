"""A request body is refused past a size limit before it is read, not after (pure ASGI).

1. A declared ``Content-Length`` over the limit is answered 413 ``request.too_large`` at once: the app
   is not called and no byte of the body is read.
2. Otherwise (chunked, or a length that lies) the bytes are counted as the app reads them; the read
   that goes past the limit raises, nothing more is read, and whatever the app makes of that error
   the answer is the 413 (if it has not started answering; then the connection is cut).

Either way the 413 says ``Connection: close``: the rest of the body is still on the wire, so the
connection cannot carry another request. The limit is per path (the contact imports take more).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nimbus_api.api.errors import send_problem
from nimbus_api.kit.problems import RequestTooLarge


class _BodyTooLarge(Exception):
    """Raised into the app by ``receive`` when the body goes past the limit."""


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, default: int, per_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.per_path = dict(per_path or {})

    def limit_for(self, scope: Scope) -> int:
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return self.per_path.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await send_problem(RequestTooLarge(limit), scope, receive, send, close=True)
            return

        received = 0
        exceeded = False
        started = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def answer_413() -> None:
            nonlocal answered, started
            answered = started = True
            await send_problem(RequestTooLarge(limit), scope, receive, send, close=True)

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                # The app answered the failed read (as a parse error, say): the answer is the 413.
                await answer_413()
                return
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            if not started:
                await answer_413()
            elif not answered:
                raise
