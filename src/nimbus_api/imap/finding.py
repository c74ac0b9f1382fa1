"""Waiting for one message to arrive (the connect-time roundtrip): poll folders until a header matches.

``find_message`` polls with backoff (0.2 s, x1.5, at most 2 s) in one session, re-``EXAMINE``-ing each
folder and running ``UID SEARCH HEADER``. IDLE is not used: it watches one mailbox per connection, and
the test message may land in INBOX or in Junk; polling two folders over one connection is simpler than
two IDLE connections and on time within the backoff cap.

``latest_sent`` reads the newest messages of the Sent folder (domain health judges DMARC alignment on
how the domain sends today).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

from nimbus_api.imap.errors import FOLDER_NOT_FOUND, ImapError
from nimbus_api.imap.names import special_use
from nimbus_api.imap.session import ImapSession, imap_session
from nimbus_api.imap.types import Folder, FoundMessage, ImapServer
from nimbus_api.kit.net import NetContext

POLL_FIRST_DELAY = 0.2
POLL_FACTOR = 1.5
POLL_MAX_DELAY = 2.0


async def default_folders(session: ImapSession, folders: Sequence[Folder] | None = None) -> list[str]:
    """The configured folder plus the junk folder, if the account has one."""
    listed = list(folders) if folders is not None else await session.list_folders()
    names = [session.server.folder]
    junk = special_use(listed, "\\Junk")
    if junk is not None and junk.name not in names:
        names.append(junk.name)
    return names


async def wait_for_message(
    session: ImapSession,
    *,
    header: str,
    token: str,
    folders: Sequence[str] | None = None,
    timeout: float,
    started: float | None = None,
) -> FoundMessage | None:
    """Poll ``folders`` for a message whose ``header`` contains ``token``; None after ``timeout``.

    ``started`` (a ``time.monotonic()`` value) lets the caller count time spent before this call.
    Every folder is checked once more at the deadline. Unknown folders raise
    ``imap.folder_not_found`` before the first poll.
    """
    start = time.monotonic() if started is None else started
    deadline = start + timeout
    listed = await session.list_folders()
    wanted = list(folders) if folders is not None else await default_folders(session, listed)
    names = {f.name for f in listed if f.selectable}
    for name in wanted:
        if name not in names and not (name.upper() == "INBOX" and "INBOX" in names):
            raise ImapError(
                FOLDER_NOT_FOUND,
                f"folder {name!r} does not exist; the mailbox has: {', '.join(sorted(names)) or 'none'}",
                data={"folders": sorted(names)},
            )
    junk = special_use(listed, "\\Junk")
    delay = POLL_FIRST_DELAY
    while True:
        for name in wanted:
            status = await session.select(name, readonly=True)
            if status.exists == 0:
                continue
            uids = await session.search_header(header, token)
            if uids:
                return FoundMessage(
                    folder=name,
                    uid=uids[0],
                    seconds=round(time.monotonic() - start, 3),
                    junk=junk is not None and junk.name == name,
                    uids=tuple(uids),
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * POLL_FACTOR, POLL_MAX_DELAY)


async def find_message(
    server: ImapServer,
    net: NetContext,
    *,
    header: str,
    token: str,
    folders: Sequence[str] | None = None,
    timeout: float,
    delete: bool = False,
    capture: int = 0,
) -> FoundMessage | None:
    """Wait up to ``timeout`` s (counted from this call) for the message with ``header: token``.

    One session; ``folders`` default to the configured folder plus the junk folder. Returns where it
    landed and after how long, or None on timeout (the caller decides what that means). With
    ``capture`` > 0 the message is read whole (up to that many bytes, else not at all) before anything
    is deleted: what the receiving side added (Received, Authentication-Results) and the signatures
    are only in that copy. With ``delete`` the found copies are removed in the same session.
    """
    started = time.monotonic()
    async with imap_session(server, net) as session:
        found = await wait_for_message(
            session, header=header, token=token, folders=folders, timeout=timeout, started=started
        )
        if found is not None and capture > 0:
            size = (await session.sizes_of([found.uid])).get(found.uid, 0)
            if 0 < size <= capture:
                raw = (await session.fetch_raw([found.uid])).get(found.uid)
                found = replace(found, raw=raw or None)
        if found is not None and delete:
            await session.delete(list(found.uids), folder=found.folder)
        return found


async def latest_sent(
    server: ImapServer, net: NetContext, *, count: int = 5, max_bytes: int, want_header: str | None = None
) -> bytes | None:
    """The newest message of the account's Sent folder (``\\Sent`` special use), read whole without
    setting ``\\Seen``; None when there is no Sent folder or nothing small enough in it.

    With ``want_header`` the newest of the last ``count`` messages that carries that header is returned
    (domain health wants one with a DKIM-Signature: clients that save their own copy before the server
    signs leave it unsigned). Messages larger than ``max_bytes`` are skipped, never read."""
    async with imap_session(server, net) as session:
        sent = special_use(await session.list_folders(), "\\Sent")
        if sent is None:
            return None
        status = await session.select(sent.name, readonly=True)
        if status.exists == 0:
            return None
        # The last UIDs are near UIDNEXT; when the newest were deleted, the whole folder is listed instead.
        recent = await session.uids_from(max(1, status.uidnext - 50)) or await session.uids_from(1)
        uids = sorted(recent, reverse=True)[:count]
        sizes = await session.sizes_of(uids)
        small = [uid for uid in uids if 0 < sizes.get(uid, 0) <= max_bytes]
        if not small:
            return None
        raws = await session.fetch_raw(small)
        for uid in small:
            raw = raws.get(uid)
            if not raw:
                continue
            if want_header is None or _has_header(raw, want_header):
                return raw
        return None


def _has_header(raw: bytes, name: str) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    prefix = name.lower().encode() + b":"
    return any(line.lower().startswith(prefix) for line in head.splitlines())
