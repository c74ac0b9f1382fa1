"""Storing what a sync fetched: classify, recognise our own mail, dedupe, match, and apply the effects.

Runs inside the sync's transaction (the caller commits, together with the folder's cursor). Per message:

* **Our own mail is not inbound**: the connect-time test message (``X-Nimbus-Verification``, or a
  ``nimbus-verify-`` Message-ID), and a message whose Message-ID is one we sent and whose From is this
  account (a Sent copy, a message filed into INBOX by a rule). It is skipped; the cursor still passes it.
* **Once per message**: ``INSERT ... ON CONFLICT DO NOTHING`` on both unique keys, the IMAP position
  ``(account, folder, uidvalidity, uid)`` and the identity ``(account, dedupe_key)`` (the Message-ID, else
  a digest of the header block). Effects run only for rows this statement inserted, so a message seen
  twice (re-fetched after a crash, copied to Junk, re-read after a UIDVALIDITY change) acts once.
* **Warmup mail is not inbound either**: a message whose ``X-Nimbus-Warmup`` marker verifies
  (``warmup.receipts``) is taken out before classification and matching, and only its receipt is recorded
  on its warmup row (where it landed); it is never stored, shown or counted as mail.
* **A message that cannot be read is still stored** (kind ``other``, parse notes in ``classification``):
  the classifier never raises.
"""

from __future__ import annotations

import email.utils
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify import Classification, classify_parsed
from nimbus_api.classify.parsing import Parsed, parse
from nimbus_api.classify.report import verdict_json
from nimbus_api.inbox import effects, matching
from nimbus_api.inbox.matching import Match
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_ids
from nimbus_api.models import InboundMessage
from nimbus_api.stages.cooldown import CooldownRules
from nimbus_api.warmup import receipts
from nimbus_api.warmup.marker import Marker

VERIFICATION_HEADER = "X-Nimbus-Verification"
_INSERT = insert(InboundMessage).on_conflict_do_nothing().returning(InboundMessage.id)
MAX_TEXT = 200_000  # characters of text/HTML body kept in the row for the inbox (the raw message is whole)


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    size: int
    truncated: bool = False


@dataclass(frozen=True)
class Target:
    """The mailbox the messages came from."""

    account_id: uuid.UUID
    workspace_id: uuid.UUID
    email: str
    min_sample: int = 20
    cooldown: CooldownRules = field(default_factory=CooldownRules)


@dataclass
class Outcome:
    stored: int = 0
    own: int = 0
    duplicates: int = 0
    warmup: int = 0


def dedupe_key(parsed: Parsed) -> str:
    message_id = parsed.message_id
    if message_id:
        return message_id[:300]
    head, _, _ = parsed.raw.partition(b"\r\n\r\n")
    if head == parsed.raw:
        head, _, _ = parsed.raw.partition(b"\n\n")
    return "sha256:" + hashlib.sha256(head).hexdigest()


def _date(parsed: Parsed) -> datetime | None:
    value = parsed.header("Date")
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _from_name(parsed: Parsed) -> str | None:
    name, _ = email.utils.parseaddr(parsed.header("From"))
    return name[:300] or None


def _is_own(parsed: Parsed, verdict: Classification, target: Target, ours: set[str]) -> bool:
    if parsed.has_header(VERIFICATION_HEADER) or verdict.message_id.startswith("nimbus-verify-"):
        return True
    return verdict.message_id in ours and verdict.from_address == target.email.lower()


def _text(value: str) -> str | None:
    value = value.replace("\x00", "")
    return value[:MAX_TEXT] if value.strip() else None


@dataclass(frozen=True)
class Batch:
    """One mailbox folder's fetched messages, to be stored under ``uidvalidity``."""

    target: Target
    folder: str
    uidvalidity: int
    fetched: Sequence[Fetched]
    role: str = "inbox"
    """The folder's role in the sync (``inbox`` or ``junk``): where warmup mail is recorded as landed."""


async def store_many(session: AsyncSession, batches: Sequence[Batch], *, marker: Marker | None = None) -> list[Outcome]:
    """Store the batches of several mailboxes in the caller's transaction: their lookups are two queries and
    their rows one INSERT, whatever their number (a sync worker commits many mailboxes' polls together).
    With ``marker``, warmup mail is recognised first and only its receipt recorded."""
    outcomes = [Outcome() for _ in batches]
    parsed_all: list[list[tuple[Fetched, Parsed]]] = []
    found_warmup: list[receipts.Receipt] = []
    for n, batch in enumerate(batches):
        items = []
        for item in batch.fetched:
            parsed = parse(item.raw)
            if receipts.is_warmup(parsed, marker):
                outcomes[n].warmup += 1
                found_warmup.append(receipts.Receipt(batch.target.account_id, parsed.message_id, batch.role))
            else:
                items.append((item, parsed))
        parsed_all.append(items)
    await receipts.record(session, found_warmup, utcnow())
    verdicts = [[classify_parsed(parsed) for _, parsed in items] for items in parsed_all]
    groups = [
        (batch.target.workspace_id, batch.target.account_id, found)
        for batch, found in zip(batches, verdicts, strict=True)
        if found
    ]
    lookups = iter(await matching.lookup_many(session, groups)) if groups else iter(())
    now = utcnow()
    rows: list[dict[str, Any]] = []
    acting: dict[uuid.UUID, tuple[int, Classification, Match | None]] = {}
    for n, (batch, items, found_verdicts) in enumerate(zip(batches, parsed_all, verdicts, strict=True)):
        if not items:
            continue
        found_all = next(lookups)
        kept = []
        for (item, parsed), verdict, found in zip(items, found_verdicts, found_all.matches, strict=True):
            if _is_own(parsed, verdict, batch.target, found_all.ours):
                outcomes[n].own += 1
            else:
                kept.append((item, parsed, verdict, found))
        ids = sorted(new_ids(len(kept)))  # in UID order: the inbox lists by id, newest first
        for row_id, (item, parsed, verdict, found) in zip(ids, kept, strict=True):
            rows.append(_row(row_id, batch, item, parsed, verdict, found, now))
            acting[row_id] = (n, verdict, found)
    if not rows:
        return outcomes
    # executemany of one cached statement (SQLAlchemy batches it as multi-row INSERTs); ``.values(rows)``
    # would compile a new statement for every batch.
    inserted = {row[0] for row in await session.execute(_INSERT, rows)}
    for row in rows:
        n, verdict, found = acting[row["id"]]
        if row["id"] in inserted:
            outcomes[n].stored += 1
            await effects.apply(session, batches[n].target, row, verdict, found)
        else:
            outcomes[n].duplicates += 1
    return outcomes


def _row(
    row_id: uuid.UUID,
    batch: Batch,
    item: Fetched,
    parsed: Parsed,
    verdict: Classification,
    found: Match | None,
    now: datetime,
) -> dict[str, Any]:
    kind = _final_kind(verdict, found)
    notes = list(verdict.parse_notes)
    if item.truncated:
        notes.append("size:truncated-at-fetch")
    return {
        "id": row_id,
        "workspace_id": batch.target.workspace_id,
        "account_id": batch.target.account_id,
        "folder": batch.folder,
        "uidvalidity": batch.uidvalidity,
        "uid": item.uid,
        "dedupe_key": dedupe_key(parsed),
        "message_id_header": verdict.message_id[:300] or None,
        "kind": kind,
        "reasons": list(verdict.reasons) + ([f"match:{found.method}"] if found else []),
        "classification": {**verdict_json(verdict, ""), "parse_notes": notes, "detected_kind": verdict.kind},
        "from_address": verdict.from_address[:320] or None,
        "from_name": _from_name(parsed),
        "to_addresses": parsed.header("To")[:2000] or None,
        "subject": verdict.subject or None,
        "date_header": _date(parsed),
        "size": item.size,
        "truncated": item.truncated,
        "raw": item.raw,
        "text_body": _text(parsed.first_text("plain")),
        "html_body": _text(parsed.first_text("html")),
        "new_text": _text(effects.new_text_of(parsed, verdict)) if kind in ("reply", "other") else None,
        "match_method": found.method if found else None,
        "sent_message_id": found.message_id if found else None,
        "enrollment_id": found.enrollment_id if found else None,
        "contact_id": found.contact_id if found else None,
        "campaign_id": found.campaign_id if found else None,
        "created_at": now,
    }


def _final_kind(verdict: Classification, found: Match | None) -> str:
    """A reply candidate that matches none of our messages is ``other``; a person's message from a
    prospect we wrote to from this account (matched by sender) is a ``reply``."""
    if verdict.kind == "reply" and found is None:
        return "other"
    if verdict.kind == "other" and found is not None and "headers:none" not in verdict.parse_notes:
        return "reply"
    return verdict.kind
