"""Types of query parameters whose parsing pydantic would make looser than the document says."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

# ISO 8601 / RFC 3339 as the document's `format: date-time` says: a calendar date first. pydantic's lax
# mode also takes a number, or a string of one, as a Unix time (`until=0.5` is 1970-01-01T00:00:00.5Z).
_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ].*)?")


def _iso_only(value: Any) -> Any:
    if isinstance(value, str) and _ISO_DATE_TIME.fullmatch(value):
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]
