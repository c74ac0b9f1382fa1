"""Cursor pagination over time-ordered UUID primary keys (newest first).

The cursor is the opaque, url-safe encoding of the last id returned; a client passes it back as
``cursor`` to get the next page. Ids are UUIDv7, so ordering by id is ordering by creation.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import Select

from nimbus_api.kit.problems import FieldError, ValidationProblem

T = TypeVar("T")
S = TypeVar("S", bound="Select[*tuple[Any, ...]]")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# A cursor is the 16 bytes of an id in url-safe base64 without padding: 22 characters, the last of which
# carries 2 bits of the id and 4 zero bits (one of A, Q, g, w), as every canonical encoding does.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{21}[AQgw]$"
Cursor = Annotated[
    str | None,
    Query(
        min_length=22,
        max_length=22,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page; leave out for the first page.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
_CURSOR = re.compile(CURSOR_PATTERN)


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to fetch the next page; null at the end.")


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    """A cursor is what the document declares: 22 url-safe base64 characters that are the canonical
    encoding of 16 bytes (``encode_cursor``'s form). Any such value is a position in the id order; one the
    API never handed out pages from there, as the document allows."""
    try:
        if not _CURSOR.fullmatch(cursor):
            raise ValueError("not the shape of a cursor")
        decoded = uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=="))
        if encode_cursor(decoded) != cursor:
            raise ValueError("not the canonical encoding of an id")
        return decoded
    except (ValueError, binascii.Error) as exc:
        raise ValidationProblem(
            [FieldError(field="cursor", message="not a cursor returned by this API", type="value_error")]
        ) from exc


def paginate(stmt: S, id_column: Any, cursor: str | None, limit: int) -> S:
    """Apply keyset pagination; fetch ``limit + 1`` rows so the caller knows if a next page exists."""
    if cursor:
        stmt = stmt.where(id_column < decode_cursor(cursor))
    return stmt.order_by(id_column.desc()).limit(limit + 1)


def page_of(rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
    items = list(rows[:limit])
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit and items else None
    return items, next_cursor
