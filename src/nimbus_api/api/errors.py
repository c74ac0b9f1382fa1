"""Every error the API answers, rendered as ``application/problem+json``.

The exception handlers turn what FastAPI and Starlette raise into the project's stable codes: a body that
cannot be parsed is a 400 ``request.malformed`` (not FastAPI's 422 ``json_invalid`` or its undocumented
``400 There was an error parsing the body``), and field-level validation stays a 422 with ``errors[]``.
``send_problem`` is the same rendering for the pure ASGI middleware of the edge, which answers before
any route runs. Neither ever puts the rejected input in the answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from nimbus_api.api.route_match import resolve
from nimbus_api.kit.problems import (
    PROBLEM_MEDIA_TYPE,
    FieldError,
    InternalError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    Problem,
    ValidationProblem,
)

# pydantic's error types for a body that is not an object at all (a rule of the whole body, a model
# validator's error, also has the location ``("body",)`` and stays a 422).
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})
# FastAPI's wording when reading the body raised something other than a JSON syntax error.
_FASTAPI_PARSE_ERROR = "There was an error parsing the body"


def problem_response(problem: Problem, path: str | None, *, close: bool = False) -> JSONResponse:
    """``close``: ask the server to close the connection after this answer (the rest of the request
    body was not read, so the connection cannot carry another request)."""
    headers = dict(problem.headers)
    if close:
        headers["Connection"] = "close"
    return JSONResponse(
        problem.to_body(instance=path), status_code=problem.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


async def send_problem(problem: Problem, scope: Scope, receive: Receive, send: Send, *, close: bool = False) -> None:
    await problem_response(problem, scope.get("path"), close=close)(scope, receive, send)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def _malformed_body(exc: RequestValidationError) -> MalformedRequest | None:
    """The body as a whole could not be read as the JSON object the operation takes."""
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            reason = str((err.get("ctx") or {}).get("error") or "syntax error")
            where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            return MalformedRequest(f"the body is not valid JSON: {reason}{where}")
        if loc == ("body",) and err.get("type") == "missing":  # FastAPI: no body, or `null`
            return MalformedRequest("this operation takes a JSON object as its body; none (or `null`) was sent")
        if loc == ("body",) and err.get("type") in _NOT_AN_OBJECT:
            return MalformedRequest("the body must be a JSON object")
    return None


def malformed_from_parse_error(cause: BaseException | None) -> MalformedRequest:
    if isinstance(cause, UnicodeDecodeError):
        return MalformedRequest(f"the body is not valid UTF-8 (invalid byte at offset {cause.start})")
    if isinstance(cause, RecursionError):
        return MalformedRequest("the body is nested too deeply to be parsed")
    return MalformedRequest("the body could not be parsed")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = _malformed_body(exc)
        if malformed is not None:
            return problem_response(malformed, request.url.path)
        # Only location, message and type are passed on: never the rejected input (it may be a password).
        errors = [
            FieldError(
                field=_field_of(tuple(err.get("loc", ()))),
                message=str(err.get("msg", "")).removeprefix("Value error, "),
                type=err["type"],
            )
            for err in exc.errors()
        ]
        return problem_response(ValidationProblem(errors), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem: Problem
        if exc.status_code == 400:
            # FastAPI: "There was an error parsing the body" (raised from the cause); Starlette's form
            # parser: its own short message about the multipart framing.
            if exc.detail == _FASTAPI_PARSE_ERROR or not exc.detail:
                problem = malformed_from_parse_error(exc.__cause__)
            else:
                problem = MalformedRequest(f"the form body could not be parsed: {exc.detail}")
        elif exc.status_code == 404:
            problem = NotFound("no such path")
        elif exc.status_code == 405:
            problem = MethodNotAllowed(resolve(request.scope).allowed)
        else:
            problem = Problem(str(exc.detail) if exc.detail else None, headers=dict(exc.headers or {}))
            code = f"http_{exc.status_code}"
            body = {
                "type": f"urn:nimbus:problem:{code}",
                "title": problem.detail or "HTTP error",
                "status": exc.status_code,
                "code": code,
                "instance": request.url.path,
            }
            return JSONResponse(
                body, status_code=exc.status_code, headers=problem.headers, media_type=PROBLEM_MEDIA_TYPE
            )
        return problem_response(problem, request.url.path)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Last resort, for an error outside ``InternalErrorMiddleware`` (which answers and logs the others):
        # Starlette's ServerErrorMiddleware sends this, then re-raises to the server.
        return problem_response(InternalError(), request.url.path)
