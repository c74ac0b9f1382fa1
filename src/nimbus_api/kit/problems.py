"""Errors that carry their HTTP meaning, rendered as RFC 9457 ``application/problem+json``.

Business code raises a ``Problem`` subclass (never ``HTTPException``); one handler in ``api.app`` renders
it. Every problem has a stable machine-readable ``code``; ``problem_responses`` documents them per route
in the OpenAPI document so generated clients know every error they can meet.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `smtp.port`.")
    message: str
    type: str = Field(description="Machine-readable kind of error, e.g. `value_error`, `missing`.")


class ProblemDetail(BaseModel):
    """RFC 9457 problem details with a stable ``code``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI naming the problem type: `urn:nimbus:problem:<code>`.")
    title: str
    status: int
    code: str = Field(description="Stable machine-readable error code.")
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="Per-field errors (validation).")


class Problem(Exception):
    """Base of every error that reaches an API client."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}

    def to_body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:nimbus:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class MalformedRequest(Problem):
    """The request cannot be read at all: a body that is not JSON, not UTF-8, nested too deeply or not an
    object, or a URL that is not UTF-8 or carries NUL. The detail says which, never echoing the input."""

    status = 400
    code = "request.malformed"
    title = "The request cannot be parsed"


class Unauthorized(Problem):
    status = 401
    code = "auth.invalid_api_key"
    title = "Missing, unknown or revoked API key"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class NotFound(Problem):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    code = "conflict"
    title = "Conflict"


class MethodNotAllowed(Problem):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"

    def __init__(self, allowed: list[str]) -> None:
        allow = ", ".join(allowed)
        super().__init__(f"this path allows {allow}", headers={"Allow": allow})


class RequestTooLarge(Problem):
    status = 413
    code = "request.too_large"
    title = "The request body is too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is limited to {limit} bytes", extra={"max_body_bytes": limit})


class UnsupportedMediaType(Problem):
    status = 415
    code = "request.unsupported_media_type"
    title = "The request body's Content-Type is not accepted here"


class ValidationProblem(Problem):
    status = 422
    code = "validation_error"
    title = "The request is not valid"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        first = errors[0] if errors else None
        super().__init__(
            detail or (f"{first.field}: {first.message}" if first else None),
            extra={"errors": [e.model_dump() for e in errors]},
        )


class RateLimited(Problem):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, extra={"retry_after": retry_after})


class InternalError(Problem):
    status = 500
    code = "internal_error"
    title = "Internal error"


class ServiceUnavailable(Problem):
    status = 503
    code = "service_unavailable"
    title = "A dependency is not reachable"


_STATUS_DESCRIPTIONS = {
    400: "The request cannot be parsed (body or URL); nothing was changed",
    401: "Missing, unknown or revoked API key",
    404: "No such object in this workspace",
    409: "Conflict with the current state",
    413: "The request body is larger than the limit; nothing was read past it",
    415: "The body's Content-Type is not the one this operation takes",
    422: "Invalid input; nothing was changed",
    429: "Rate limited; see Retry-After",
    500: "An unexpected error; nothing was changed",
    503: "A dependency is not reachable",
}
# The code a status carries when a route lists none of its own (the generic ``Problem`` subclasses').
_DEFAULT_CODES = {
    400: [MalformedRequest.code],
    401: [Unauthorized.code],
    404: [NotFound.code],
    409: [Conflict.code],
    413: [RequestTooLarge.code],
    415: [UnsupportedMediaType.code],
    422: [ValidationProblem.code],
    429: [RateLimited.code],
    500: [InternalError.code],
    503: [ServiceUnavailable.code],
}


def problem_responses(*statuses: int, codes: dict[int, list[str]] | None = None) -> dict[int | str, Any]:
    """OpenAPI ``responses=`` entries for the given statuses, listing their stable codes."""
    out: dict[int | str, Any] = {}
    for status in statuses:
        description = _STATUS_DESCRIPTIONS.get(status, "Error")
        listed = (codes or {}).get(status) or _DEFAULT_CODES.get(status)
        if listed:
            description += ". Codes: " + ", ".join(f"`{c}`" for c in listed)
        out[status] = {
            "description": description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
        }
    return out
