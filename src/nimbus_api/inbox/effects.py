"""What an inbound message changes, in the transaction that stores it (filled in by the effects step)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify import Classification
from nimbus_api.classify.parsing import Parsed
from nimbus_api.inbox.matching import Match

if TYPE_CHECKING:
    from nimbus_api.inbox.ingest import Target

_QUOTED = re.compile(r"^\s*>")


def new_text_of(parsed: Parsed, verdict: Classification) -> str:
    """The text the sender wrote, without the quoted history."""
    lines = [line for line in parsed.body_text().splitlines() if not _QUOTED.match(line)]
    return "\n".join(lines).strip()


async def apply(
    session: AsyncSession, target: Target, row: dict[str, Any], verdict: Classification, found: Match | None
) -> None:
    return None
