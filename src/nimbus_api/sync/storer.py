"""Group commit for the sync: many mailboxes' fetched batches stored in one transaction.

A poll hands each batch (messages plus the folder's new cursor) to ``Storer.store`` and waits for it to be
committed before fetching the next. The storer collects what the polls of the moment hand it (a few
milliseconds) and commits them together: one lease check for all their mailboxes, the lookups and the
INSERT of all their rows (``ingest.store_many``; warmup mail is recognised there by its marker and only its
receipt recorded), the effects, all their cursors in one statement, one
commit. A mailbox's messages and its cursor are still in the same transaction, so the cursor never runs
ahead of the data; a poll's batches are committed in order because it waits for each.

A mailbox whose lease this worker lost is left out of the transaction and its poll gets ``LeaseLost``. A
transaction that fails is retried one mailbox at a time, so one mailbox's problem cannot hold up others.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.inbox import ingest
from nimbus_api.stages.cooldown import CooldownRules
from nimbus_api.sync.cursor import Cursor
from nimbus_api.sync.mailboxes import Mailbox
from nimbus_api.warmup.marker import Marker

MAX_BATCH = 64
LINGER = 0.005

_LOCK_HELD = text(
    """
    SELECT account_id FROM mailbox_syncs
    WHERE account_id = ANY(:ids) AND lease_owner = :owner AND lease_expires_at > now()
    ORDER BY account_id
    FOR NO KEY UPDATE
    """
)
_SAVE_CURSORS = text(
    """
    WITH folder AS (
        INSERT INTO mailbox_folders (account_id, name, role, state, uidvalidity, last_uid, resets, updated_at)
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS varchar[]), CAST(:roles AS varchar[]),
                             CAST(:states AS varchar[]), CAST(:uidvalidities AS bigint[]),
                             CAST(:last_uids AS bigint[]), CAST(:resets AS int[]), CAST(:ats AS timestamptz[]))
        ON CONFLICT (account_id, name) DO UPDATE
        SET role = EXCLUDED.role, state = EXCLUDED.state, uidvalidity = EXCLUDED.uidvalidity,
            last_uid = EXCLUDED.last_uid, resets = EXCLUDED.resets, updated_at = EXCLUDED.updated_at
    )
    UPDATE mailbox_syncs s SET messages_stored = s.messages_stored + v.n
    FROM unnest(CAST(:ids AS uuid[]), CAST(:stored AS bigint[])) AS v(id, n)
    WHERE s.account_id = v.id AND v.n > 0
    """
)


class LeaseLost(Exception):
    """This worker no longer holds the mailbox: what the poll was about to write is not written."""


@dataclass
class _Request:
    mailbox: Mailbox
    folder: str
    role: str
    uidvalidity: int
    fetched: list[ingest.Fetched]
    cursor: Cursor
    done: asyncio.Future[int] = field(repr=False)


class Storer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        owner: str,
        *,
        min_sample: int,
        clock: Callable[[], datetime],
        cooldown: CooldownRules | None = None,
        marker: Marker | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.marker = marker
        self.owner = owner
        self.min_sample = min_sample
        self.cooldown = cooldown or CooldownRules()
        self.clock = clock
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0

    async def store(
        self,
        mailbox: Mailbox,
        folder: str,
        role: str,
        uidvalidity: int,
        fetched: list[ingest.Fetched],
        cursor: Cursor,
    ) -> int:
        """Store the batch with the folder's new cursor; returns how many messages were new."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(mailbox, folder, role, uidvalidity, fetched, cursor, done))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="sync-storer")
        return await done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for request in self._queue:
            if not request.done.done():
                request.done.set_exception(LeaseLost("the worker is stopping"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(LINGER)  # let the polls of this moment hand over theirs
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            await self._commit(batch)

    async def _commit(self, requests: list[_Request]) -> None:
        try:
            results = await self._transaction(requests)
        except Exception as exc:
            if len(requests) == 1:
                if not requests[0].done.done():
                    requests[0].done.set_exception(exc)
                return
            for request in requests:  # one at a time: a poison mailbox fails alone
                await self._commit([request])
            return
        for request, result in zip(requests, results, strict=True):
            if request.done.done():
                continue
            if isinstance(result, LeaseLost):
                request.done.set_exception(result)
            else:
                request.done.set_result(result)

    async def _transaction(self, requests: list[_Request]) -> list[int | LeaseLost]:
        ids = sorted({r.mailbox.account_id for r in requests})
        async with self.sessionmaker() as session:
            held: set[uuid.UUID] = {
                row[0] for row in await session.execute(_LOCK_HELD, {"ids": ids, "owner": self.owner})
            }
            live = [r for r in requests if r.mailbox.account_id in held]
            outcomes = await ingest.store_many(
                session,
                [
                    ingest.Batch(
                        target=ingest.Target(
                            account_id=r.mailbox.account_id,
                            workspace_id=r.mailbox.workspace_id,
                            email=r.mailbox.email,
                            min_sample=self.min_sample,
                            cooldown=self.cooldown,
                        ),
                        folder=r.folder,
                        uidvalidity=r.uidvalidity,
                        fetched=r.fetched,
                        role=r.role,
                    )
                    for r in live
                ],
                marker=self.marker,
            )
            if live:
                now = self.clock()
                await session.execute(
                    _SAVE_CURSORS,
                    {
                        "ids": [r.mailbox.account_id for r in live],
                        "names": [r.folder for r in live],
                        "roles": [r.role for r in live],
                        "states": [r.cursor.state for r in live],
                        "uidvalidities": [r.cursor.uidvalidity for r in live],
                        "last_uids": [r.cursor.last_uid for r in live],
                        "resets": [r.cursor.resets for r in live],
                        "ats": [now] * len(live),
                        "stored": [o.stored for o in outcomes],
                    },
                )
            await session.commit()
            self.transactions += 1
        stored = {id(r): o.stored for r, o in zip(live, outcomes, strict=True)}
        return [stored[id(r)] if id(r) in stored else LeaseLost(str(r.mailbox.account_id)) for r in requests]
