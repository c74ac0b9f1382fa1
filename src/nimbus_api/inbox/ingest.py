"""Storing what a sync fetched: classify, recognise our own mail, dedupe, match, and apply the effects.

Runs inside the sync's transaction (the caller commits, together with the folder's cursor). Per message:

* **Our own mail is not inbound**: the connect-time test message (``X-Nimbus-Verification``, or a
  ``nimbus-verify-`` Message-ID), and a message whose Message-ID is one we sent and whose From is this
  account (a Sent copy, a message filed into INBOX by a rule). It is skipped; the cursor still passes it.
* **Once per message**: ``INSERT ... ON CONFLICT DO NOTHING`` on both unique keys, the IMAP position
  ``(account, folder, uidvalidity, uid)`` and the identity ``(account, dedupe_key)`` (the Message-ID, else
  a digest of the header block). Effects run only for rows this statement inserted, so a message seen
  twice (re-fetched after a crash, copied to Junk, re-read after a UIDVALIDITY change) acts once.
* **A message that cannot be read is still stored** (kind ``other``, parse notes in ``classification``):
  the classifier never raises.
"""

from __future__ import annotations

import email.utils
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify import Classification, classify_parsed
from nimbus_api.classify.parsing import Parsed, parse
from nimbus_api.classify.report import verdict_json
from nimbus_api.inbox import effects
from nimbus_api.inbox.matching import Match, match
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_ids
from nimbus_api.models import InboundMessage, Message

VERIFICATION_HEADER = "X-Nimbus-Verification"
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


@dataclass
class Outcome:
    stored: int = 0
    own: int = 0
    duplicates: int = 0


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


async def _ours(session: AsyncSession, workspace_id: uuid.UUID, ids: Sequence[str]) -> set[str]:
    wanted = [f"<{i}>" for i in ids if i]
    if not wanted:
        return set()
    rows = await session.scalars(
        select(Message.message_id_header).where(
            Message.message_id_header.in_(wanted), Message.workspace_id == workspace_id
        )
    )
    return {value.strip("<>") for value in rows}


def _is_own(parsed: Parsed, verdict: Classification, target: Target, ours: set[str]) -> bool:
    if parsed.has_header(VERIFICATION_HEADER) or verdict.message_id.startswith("nimbus-verify-"):
        return True
    return verdict.message_id in ours and verdict.from_address == target.email.lower()


def _text(value: str) -> str | None:
    value = value.replace("\x00", "")
    return value[:MAX_TEXT] if value.strip() else None


async def store(
    session: AsyncSession, target: Target, folder: str, uidvalidity: int, fetched: Sequence[Fetched]
) -> Outcome:
    outcome = Outcome()
    if not fetched:
        return outcome
    parsed_all = [(item, parse(item.raw)) for item in fetched]
    verdicts = [classify_parsed(parsed) for _, parsed in parsed_all]
    ours = await _ours(session, target.workspace_id, [v.message_id for v in verdicts])
    rows: list[dict[str, Any]] = []
    kept: list[tuple[Fetched, Parsed, Classification]] = []
    for (item, parsed), verdict in zip(parsed_all, verdicts, strict=True):
        if _is_own(parsed, verdict, target, ours):
            outcome.own += 1
            continue
        kept.append((item, parsed, verdict))
    if not kept:
        return outcome
    now = utcnow()
    ids = sorted(new_ids(len(kept)))  # in UID order: the inbox lists by id, newest first
    matches: dict[uuid.UUID, tuple[Classification, Match | None, Parsed]] = {}
    for row_id, (item, parsed, verdict) in zip(ids, kept, strict=True):
        found = await match(session, target.workspace_id, target.account_id, verdict)
        kind = _final_kind(verdict, found)
        notes = list(verdict.parse_notes)
        if item.truncated:
            notes.append("size:truncated-at-fetch")
        rows.append(
            {
                "id": row_id,
                "workspace_id": target.workspace_id,
                "account_id": target.account_id,
                "folder": folder,
                "uidvalidity": uidvalidity,
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
        )
        matches[row_id] = (verdict, found, parsed)
    inserted = await session.execute(
        insert(InboundMessage).values(rows).on_conflict_do_nothing().returning(InboundMessage.id)
    )
    new = {row[0] for row in inserted}
    outcome.stored = len(new)
    outcome.duplicates = len(rows) - len(new)
    for row in rows:
        if row["id"] in new:
            verdict, found, _ = matches[row["id"]]
            await effects.apply(session, target, row, verdict, found)
    return outcome


def _final_kind(verdict: Classification, found: Match | None) -> str:
    """A reply candidate that matches none of our messages is ``other``; a person's message from a
    prospect we wrote to from this account (matched by sender) is a ``reply``."""
    if verdict.kind == "reply" and found is None:
        return "other"
    if verdict.kind == "other" and found is not None and "headers:none" not in verdict.parse_notes:
        return "reply"
    return verdict.kind
