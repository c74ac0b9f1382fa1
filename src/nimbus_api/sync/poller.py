"""One poll of one mailbox: STATUS the folders, fetch what is new, store it with the cursor.

A poll reads the configured folder and the special-use Junk folder (found by ``LIST`` when the
connection opened). Per folder, ``cursor.plan`` decides from ``STATUS (UIDVALIDITY UIDNEXT MESSAGES)``;
when there is something to fetch, the folder is EXAMINEd (read-only: flags stay as they are), sizes are
read first (``RFC822.SIZE``), and messages are fetched in batches (``BATCH_COUNT`` messages or
``BATCH_BYTES``, whichever comes first) with ``BODY.PEEK[]``; one over ``max_message_bytes`` is fetched as
its header and the first ``PART_LIMIT`` bytes of its first part and marked truncated. Each batch is stored
and the cursor saved in one transaction (``store``), while this worker still holds the mailbox's lease;
the folder is then left (CLOSE) so the next STATUS is exact.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from nimbus_api.imap import ImapSession
from nimbus_api.inbox.ingest import Fetched
from nimbus_api.kit.db import utcnow
from nimbus_api.sync.connections import Held
from nimbus_api.sync.cursor import Cursor, Plan, advance, plan
from nimbus_api.sync.mailboxes import Mailbox

BATCH_COUNT = 25
BATCH_BYTES = 8 * 1024 * 1024
PART_LIMIT = 256 * 1024

Store = Callable[[Mailbox, str, str, int, list[Fetched], Cursor], Awaitable[int]]
"""``store(mailbox, folder, role, uidvalidity, fetched, cursor) -> stored``: one committed transaction."""


@dataclass
class PollReport:
    folders: int = 0
    fetched: int = 0
    stored: int = 0
    idle: bool = True
    plans: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int
    window_days: int


def first_since(mailbox: Mailbox, window_days: int) -> date:
    """A new mailbox reads mail since it was connected (at most ``window_days`` back)."""
    floor = (utcnow() - timedelta(days=window_days)).date()
    return max(mailbox.created_at.date(), floor)


def batches(uids: list[int], sizes: dict[int, int], cap: int) -> list[list[int]]:
    out: list[list[int]] = []
    current: list[int] = []
    used = 0
    for uid in uids:
        size = min(sizes.get(uid, 0), cap)
        if current and (len(current) >= BATCH_COUNT or used + size > BATCH_BYTES):
            out.append(current)
            current, used = [], 0
        current.append(uid)
        used += size
    if current:
        out.append(current)
    return out


_CT_LINES = re.compile(rb"^(content-type|content-transfer-encoding)\s*:.*(?:\r?\n[ \t].*)*\r?\n", re.I | re.M)


def compose_truncated(header: bytes, part_header: bytes, part_body: bytes) -> bytes:
    """A readable stand-in for a message too big to fetch: its header and the start of its first part.

    For a multipart message the top Content-Type (and encoding) are replaced by the first part's, so the
    result parses as that part; a single-part message is its header plus the start of its body.
    """
    top = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header)
    if top.get_content_maintype() != "multipart":
        return header + part_body
    head = _CT_LINES.sub(b"", header).rstrip(b"\r\n") + b"\r\n"
    return head + part_header + part_body


async def _fetch(session: ImapSession, uids: list[int], sizes: dict[int, int], cap: int) -> list[Fetched]:
    small = [u for u in uids if sizes.get(u, 0) <= cap]
    big = [u for u in uids if sizes.get(u, 0) > cap]
    raw = await session.fetch_raw(small) if small else {}
    heads = await session.fetch_head(big, PART_LIMIT) if big else {}
    out: list[Fetched] = []
    for uid in uids:
        if uid in raw:
            out.append(Fetched(uid=uid, raw=raw[uid], size=sizes.get(uid, len(raw[uid]))))
        elif uid in heads:
            out.append(Fetched(uid=uid, raw=compose_truncated(*heads[uid]), size=sizes.get(uid, 0), truncated=True))
    return out


async def poll(held: Held, mailbox: Mailbox, store: Store, limits: Limits) -> PollReport:
    """Poll both folders; raises ``ImapError`` on a failure (what was stored before it stays stored)."""
    report = PollReport()
    folders = [(mailbox.folder, "inbox")]
    if held.junk is not None and held.junk != mailbox.folder:
        folders.append((held.junk, "junk"))
    session = held.session
    resync_since = (utcnow() - timedelta(days=limits.window_days)).date()
    for name, role in folders:
        report.folders += 1
        status = await session.status(name)
        cursor = mailbox.cursors.get(name, Cursor())
        step = plan(
            cursor,
            uidvalidity=status.uidvalidity,
            uidnext=status.uidnext,
            first_since=first_since(mailbox, limits.window_days),
            resync_since=resync_since,
        )
        report.plans.append(f"{role}:{step.action}")
        if step.action == "idle":
            if cursor.resets:
                await _save(store, mailbox, name, role, step, cursor, [], None, complete=True)
            continue
        report.idle = False
        if step.action == "adopt":
            await _save(store, mailbox, name, role, step, cursor, [], None, complete=True)
            continue
        await session.select(name, readonly=True)
        try:
            if step.action == "range":
                sizes = await session.sizes_from(step.start_uid)
            else:
                assert step.since is not None
                sizes = await session.sizes_of(await session.search_since(step.since))
            uids = sorted(sizes)
            groups = batches(uids, sizes, limits.max_message_bytes) or [[]]
            for index, group in enumerate(groups):
                fetched = await _fetch(session, group, sizes, limits.max_message_bytes) if group else []
                report.fetched += len(fetched)
                complete = index == len(groups) - 1
                cursor, stored = await _save(
                    store, mailbox, name, role, step, cursor, fetched, max(group) if group else None, complete=complete
                )
                report.stored += stored
        finally:
            if session.usable:
                await session.unselect()
    return report


async def _save(
    store: Store,
    mailbox: Mailbox,
    name: str,
    role: str,
    step: Plan,
    cursor: Cursor,
    fetched: list[Fetched],
    up_to: int | None,
    *,
    complete: bool,
) -> tuple[Cursor, int]:
    new = advance(cursor, step, up_to, complete=complete)
    stored = await store(mailbox, name, role, step.uidvalidity, fetched, new)
    mailbox.cursors[name] = new
    return new, stored
