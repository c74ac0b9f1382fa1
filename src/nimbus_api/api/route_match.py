"""Which operation a request is for, by the OpenAPI rule that a concrete path wins over a templated one.

Starlette takes the first route that matches path and method, so ``GET /v1/contacts/import`` is served by
``GET /v1/contacts/{contact_id}`` (and fails on the id) although ``/v1/contacts/import`` is a path of its
own that has no GET; and its 405 lists only the methods of the first route that matched the path. Here
the path template is chosen first (a literal segment beats a parameter, segment by segment, as OpenAPI
3 says), then the method: the request is for that template or it is a 405 listing every method the
template has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import RouteContext, iter_route_contexts
from starlette.routing import Match
from starlette.types import Scope

# The order ``Allow`` lists methods in (others follow, sorted).
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Resolution:
    """``route``: the route that serves the request; None when no path matches (404) or when the
    path's template has no such method (405, ``allowed`` lists the template's methods)."""

    route: RouteContext | None
    allowed: list[str] = field(default_factory=list)
    path_matched: bool = False


def _concreteness(path: str) -> tuple[int, ...]:
    return tuple(1 if "{" in segment else 0 for segment in path.split("/"))


def _ordered(methods: set[str]) -> list[str]:
    known = [m for m in _METHOD_ORDER if m in methods]
    return known + sorted(methods - set(known))


def resolve(scope: Scope) -> Resolution:
    app: Any = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None) or []
    matched: list[tuple[RouteContext, str, Match]] = []
    for route in iter_route_contexts(routes):
        path = route.path
        if route.methods is None or path is None:
            continue  # a mount or a websocket: Starlette's routing decides
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            matched.append((route, path, match))
    if not matched:
        return Resolution(route=None)
    best = min(_concreteness(path) for _, path, _ in matched)
    chosen = [(route, match) for route, path, match in matched if _concreteness(path) == best]
    allowed = _ordered({m for route, _ in chosen for m in route.methods or ()})
    for route, match in chosen:
        if match is Match.FULL:
            return Resolution(route=route, allowed=allowed, path_matched=True)
    return Resolution(route=None, allowed=allowed, path_matched=True)


def body_media_type(route: RouteContext) -> str | None:
    """The media type an operation's body is declared with (None: it takes no body)."""
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return None
    media_type: str = getattr(body_field.field_info, "media_type", "application/json")
    return media_type
