"""Persistent IMAP connections of one worker, one per held mailbox, bounded and closed when idle.

A poll asks ``get(mailbox)``: the open session if it is still usable and was opened with the mailbox's
current settings, else a new one. Opening is the only moment the password is decrypted (``open_password``
writes the audit row, purpose ``sync``), so a mailbox polled every 30 s costs one decrypt per connection,
not per poll. A session that failed (timeout, protocol error, closed by the server) is dropped by the
poller (``discard``) and the next poll reconnects; the poller's backoff (``sync.status``) spaces the
retries. At most ``capacity`` sessions are open: opening one more closes the least recently used.
Sessions unused for ``idle_close`` seconds are closed by ``close_idle`` (the runner calls it each renewal).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

from nimbus_api.imap import ImapError, ImapSession, open_session, special_use
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.net import NetContext
from nimbus_api.sync.mailboxes import Mailbox


@dataclass
class Held:
    session: ImapSession
    key: tuple[object, ...]
    junk: str | None
    folders: frozenset[str]
    last_used: float


class ConnectionBook:
    def __init__(
        self,
        net: NetContext,
        open_password: Callable[[Mailbox], Awaitable[Secret | None]],
        *,
        capacity: int,
        idle_close: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.net = net
        self.open_password = open_password
        self.capacity = capacity
        self.idle_close = idle_close
        self.clock = clock
        self._held: OrderedDict[uuid.UUID, Held] = OrderedDict()
        self.opened = 0

    def __len__(self) -> int:
        return len(self._held)

    async def get(self, mailbox: Mailbox) -> Held:
        held = self._held.get(mailbox.account_id)
        if held is not None and held.session.usable and held.key == mailbox.settings_key:
            held.last_used = self.clock()
            self._held.move_to_end(mailbox.account_id)
            return held
        if held is not None:
            await self.discard(mailbox.account_id)
        while len(self._held) >= self.capacity:
            oldest = next(iter(self._held))
            await self.discard(oldest)
        password = await self.open_password(mailbox)
        if password is None:
            raise ImapError("imap.auth_failed", "no IMAP password is stored for this mailbox")
        session = await open_session(mailbox.server(password), self.net)
        del password
        try:
            listed = await session.list_folders()
        except BaseException:
            session.abort()
            raise
        junk = special_use(listed, "\\Junk")
        held = Held(
            session=session,
            key=mailbox.settings_key,
            junk=junk.name if junk is not None else None,
            folders=frozenset(f.name for f in listed if f.selectable),
            last_used=self.clock(),
        )
        self._held[mailbox.account_id] = held
        self.opened += 1
        return held

    async def discard(self, account_id: uuid.UUID, *, graceful: bool = False) -> None:
        held = self._held.pop(account_id, None)
        if held is None:
            return
        if graceful and held.session.usable:
            with suppress(ImapError, OSError, asyncio.TimeoutError):
                await held.session.aclose()
        else:
            held.session.abort()

    async def close_idle(self) -> int:
        now = self.clock()
        idle = [account_id for account_id, h in self._held.items() if now - h.last_used > self.idle_close]
        for account_id in idle:
            await self.discard(account_id, graceful=True)
        return len(idle)

    async def close_all(self) -> None:
        ids = list(self._held)
        await asyncio.gather(*(self.discard(i, graceful=True) for i in ids), return_exceptions=True)
