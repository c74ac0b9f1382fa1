"""The checks a request passes before any route reads it (pure ASGI, no body read here):

1. The URL is UTF-8 without NUL once percent-decoded, in the path and in every query parameter: else
   400 ``request.malformed`` (a NUL cannot be stored or compared in PostgreSQL text, and Starlette
   would silently turn invalid UTF-8 into U+FFFD).
2. The path's operation has the method (``route_match``): else 405 ``method_not_allowed`` with ``Allow``
   listing every method of the path.
3. A request that carries a body sends the Content-Type the operation takes (JSON, a form, a multipart
   upload): else 415 ``request.unsupported_media_type``, before the body is read. A request without a
   body goes on: the operation then says the body is missing.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus_api.api.errors import send_problem
from nimbus_api.api.route_match import body_media_type, resolve
from nimbus_api.kit.problems import MalformedRequest, MethodNotAllowed, Problem, UnsupportedMediaType

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}")
# What each declared body media type accepts (Starlette parses both kinds of form the same way).
_ACCEPTED = {
    "application/x-www-form-urlencoded": ("application/x-www-form-urlencoded", "multipart/form-data"),
    "multipart/form-data": ("multipart/form-data",),
}


def _is_text(raw: bytes) -> bool:
    try:
        return "\x00" not in raw.decode("utf-8")
    except UnicodeDecodeError:
        return False


def url_problem(scope: Scope) -> MalformedRequest | None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    if not _is_text(unquote_to_bytes(raw_path.split(b"?", 1)[0])):  # some servers leave the query on it
        return MalformedRequest("the URL path is not valid UTF-8 or contains a NUL character")
    query: bytes = scope.get("query_string", b"")
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        raw_name = unquote_to_bytes(name.replace(b"+", b" "))
        if _is_text(raw_name) and _is_text(unquote_to_bytes(value.replace(b"+", b" "))):
            continue
        decoded = raw_name.decode("utf-8", "replace")
        label = f"query parameter `{decoded}`" if _PLAIN_NAME.fullmatch(decoded) else "a query parameter"
        return MalformedRequest(f"{label} is not valid UTF-8 or contains a NUL character")
    return None


def _has_body(headers: Headers) -> bool:
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length")
    return length is not None and length.strip() not in ("", "0")


def _media_type_problem(scope: Scope, declared: str) -> UnsupportedMediaType | None:
    headers = Headers(scope=scope)
    if not _has_body(headers):
        return None
    sent = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared == "application/json":
        main, _, sub = sent.partition("/")
        if main == "application" and (sub == "json" or sub.endswith("+json")):
            return None
    elif sent in _ACCEPTED.get(declared, (declared,)):
        return None
    given = f"`{sent}`" if _MEDIA_TYPE.fullmatch(sent) else ("none" if not sent else "not a media type")
    return UnsupportedMediaType(f"send the body as `{declared}` (Content-Type given: {given})")


class RequestGateMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._check(scope)
            if problem is not None:
                await send_problem(problem, scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _check(scope: Scope) -> Problem | None:
        malformed = url_problem(scope)
        if malformed is not None:
            return malformed
        resolution = resolve(scope)
        if resolution.route is None:
            return MethodNotAllowed(resolution.allowed) if resolution.path_matched else None
        declared = body_media_type(resolution.route)
        return _media_type_problem(scope, declared) if declared else None
