"""The answers of the edge (``gate``, ``body_limit``, the body parsing in ``errors``), declared on the
operations they can come from: 400 on every operation (a URL can be malformed), 500 and 503 on every
operation (``internal_errors``), 413 and 415 on every operation that takes a body."""

from __future__ import annotations

from typing import Any

from nimbus_api.config import Settings
from nimbus_api.kit.problems import (
    PROBLEM_MEDIA_TYPE,
    InternalError,
    MalformedRequest,
    RequestTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)

_HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
_URL = "the URL path or a query parameter is not valid UTF-8 or contains a NUL character"
_BODY = (
    "the body is not a JSON object (not JSON, not UTF-8, nested too deeply, empty, `null` or an array)"
    " or the form cannot be parsed"
)


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:g} MB" if size % 1024 == 0 else f"{size} bytes"


def _response(description: str, code: str) -> dict[str, Any]:
    return {"description": f"{description}. Codes: `{code}`", "content": _CONTENT}


def document_edge_responses(schema: dict[str, Any], settings: Settings, import_paths: tuple[str, ...]) -> None:
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            has_body = "requestBody" in operation
            if "400" not in responses:
                why = f"{_BODY}, or {_URL}" if has_body else _URL
                responses["400"] = _response(f"The request cannot be parsed: {why}", MalformedRequest.code)
            responses.setdefault("500", _response("An unexpected error; nothing was changed", InternalError.code))
            responses.setdefault(
                "503",
                {
                    **_response(
                        "A data store (PostgreSQL or Redis) is not reachable; nothing was changed. Try again after "
                        "`Retry-After` seconds",
                        ServiceUnavailable.code,
                    ),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
                },
            )
            if not has_body:
                continue
            media = ", ".join(f"`{m}`" for m in operation["requestBody"].get("content", {}))
            if path in import_paths:
                limit, setting = settings.max_import_body_bytes, "NIMBUS_MAX_IMPORT_BODY_BYTES"
            else:
                limit, setting = settings.max_body_bytes, "NIMBUS_MAX_BODY_BYTES"
            responses.setdefault(
                "413",
                _response(
                    f"The body is larger than {_megabytes(limit)} (`{setting}`); it was not read",
                    RequestTooLarge.code,
                ),
            )
            responses.setdefault("415", _response(f"The body's Content-Type is not {media}", UnsupportedMediaType.code))
