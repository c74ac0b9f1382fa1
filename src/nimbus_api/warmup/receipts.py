"""What the IMAP sync does with warmup mail: recognise it before it is stored, and record where it landed.

``ingest.store_many`` asks ``is_warmup`` of every fetched message before classifying or matching it: a
message whose ``X-Nimbus-Warmup`` verifies for its own Message-ID (``marker``) is never stored as inbound
mail, so it never reaches the unified inbox, campaign stats, reply effects or enrollment matching. A marker
that does not verify (forged, copied onto another Message-ID, from another deployment) is ignored and the
message is ordinary mail.

``record`` then writes, in the sync's own transaction (with the folder's cursor), on the row of that
Message-ID whose recipient is this inbox: ``received_at`` and ``landed`` (``inbox`` or ``junk``: the
folder's role) the first time only, so the copy the receiver later moves into INBOX changes nothing. A row
still ``unknown`` (its sender lost track of the SMTP outcome) is proven sent and counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify.parsing import Parsed
from nimbus_api.warmup.counting import count_sent
from nimbus_api.warmup.marker import HEADER, Marker


@dataclass(frozen=True)
class Receipt:
    account_id: uuid.UUID
    message_id: str
    role: str  # the folder's role in the sync: inbox | junk


def is_warmup(parsed: Parsed, marker: Marker | None) -> bool:
    if marker is None or not parsed.has_header(HEADER):
        return False
    return marker.verify(parsed.header(HEADER), parsed.message_id)


_RECORD = text(
    """
    WITH found AS (
        SELECT w.id, w.state AS before
        FROM warmup_messages w
        JOIN unnest(CAST(:mids AS varchar[]), CAST(:recipients AS uuid[])) AS v(mid, recipient)
          ON w.message_id_header = v.mid AND w.recipient_id = v.recipient
        WHERE w.received_at IS NULL OR w.state = 'unknown'
        FOR UPDATE OF w
    ), landed AS (
        SELECT * FROM unnest(CAST(:mids AS varchar[]), CAST(:roles AS varchar[])) AS l(mid, role)
    )
    UPDATE warmup_messages w
    SET received_at = COALESCE(w.received_at, CAST(:now AS timestamptz)),
        landed = COALESCE(w.landed, (SELECT CASE WHEN l.role = 'junk' THEN 'junk' ELSE 'inbox' END
                                     FROM landed l WHERE l.mid = w.message_id_header LIMIT 1)),
        state = CASE WHEN w.state = 'unknown' THEN 'sent' ELSE w.state END,
        sent_at = CASE WHEN w.state = 'unknown' THEN COALESCE(w.sent_at, CAST(:now AS timestamptz)) ELSE w.sent_at END
    FROM found
    WHERE w.id = found.id
    RETURNING found.before, w.sender_id, w.parent_id
    """
)


async def record(session: AsyncSession, receipts: Sequence[Receipt], now: datetime) -> int:
    """Record the receipts (the sync's transaction; flushes only); returns how many rows changed."""
    if not receipts:
        return 0
    rows = (
        await session.execute(
            _RECORD,
            {
                "mids": [r.message_id for r in receipts],
                "recipients": [r.account_id for r in receipts],
                "roles": [r.role for r in receipts],
                "now": now,
            },
        )
    ).all()
    await count_sent(session, [(r.sender_id, r.parent_id) for r in rows if r.before == "unknown"])
    return len(rows)
