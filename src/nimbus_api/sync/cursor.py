"""The cursor of one synced folder, and what a poll does with it: a small, pure state machine.

A cursor is ``(state, uidvalidity, last_uid)``: the folder's UIDVALIDITY when we last read it and the
highest UID we have stored (or decided to skip) under it. It is saved in the transaction that stores the
messages it covers, so it never runs ahead of the data: a poll that dies before its commit is simply run
again, and the unique key ``(account, folder, uidvalidity, uid)`` makes the re-run harmless.

States and transitions (``plan`` decides from the STATUS reply; ``advance`` gives the cursor to save)::

    initial --STATUS--> window(since = first_sync_since)          (a new mailbox: read recent mail only)
            --stored--> polling(uidvalidity, last_uid = max(uidnext - 1, highest stored))

    polling --STATUS, same UIDVALIDITY, UIDNEXT <= last_uid + 1--> idle (nothing is fetched)
            --STATUS, same UIDVALIDITY, UIDNEXT moved-----------> range(last_uid + 1 : *)
            --stored--> polling(last_uid = highest stored, or uidnext - 1 when the new ones were expunged)
            --STATUS, UIDVALIDITY changed--> resync

    resync  --> window(since = now - resync_window)  (UIDs are void: re-read a bounded window, and the
                Message-ID dedupe skips what was stored before, so old mail is not announced again)
            --stored--> polling(new uidvalidity, last_uid = max(uidnext - 1, highest stored)), resets + 1

After ``MAX_RESETS`` resets in a row (a server that changes UIDVALIDITY at every poll), a further change is
adopted without a re-read (``adopt``): the cursor moves to ``uidnext - 1`` and polling goes on, so a broken
server costs one STATUS per poll instead of a window fetch. A poll with an unchanged UIDVALIDITY resets
the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

State = Literal["initial", "polling"]
MAX_RESETS = 3


@dataclass(frozen=True, slots=True)
class Cursor:
    state: State = "initial"
    uidvalidity: int | None = None
    last_uid: int = 0
    resets: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What to fetch: nothing (``idle``), UIDs from ``start_uid`` on (``range``), the UIDs SEARCH SINCE
    ``since`` returns (``window``), or nothing but a new cursor (``adopt``)."""

    action: Literal["idle", "range", "window", "adopt"]
    uidvalidity: int
    uidnext: int
    start_uid: int = 0
    since: date | None = None
    reset: bool = False


def plan(cursor: Cursor, *, uidvalidity: int, uidnext: int, first_since: date, resync_since: date) -> Plan:
    if cursor.state == "initial" or cursor.uidvalidity is None:
        return Plan("window", uidvalidity, uidnext, since=first_since)
    if uidvalidity != cursor.uidvalidity:
        if cursor.resets >= MAX_RESETS:
            return Plan("adopt", uidvalidity, uidnext, reset=True)
        return Plan("window", uidvalidity, uidnext, since=resync_since, reset=True)
    if uidnext <= cursor.last_uid + 1:
        return Plan("idle", uidvalidity, uidnext)
    return Plan("range", uidvalidity, uidnext, start_uid=cursor.last_uid + 1)


def advance(cursor: Cursor, step: Plan, stored_up_to: int | None, *, complete: bool) -> Cursor:
    """The cursor to save with the messages a step stored.

    ``stored_up_to``: the highest UID stored (or deliberately skipped) in this transaction. ``complete``:
    this is the step's last batch; only then may the cursor jump to ``uidnext - 1`` (UIDs below UIDNEXT that
    the fetch did not return were expunged meanwhile) and a window's new UIDVALIDITY be taken on.
    """
    if step.action == "idle":
        return Cursor("polling", cursor.uidvalidity, cursor.last_uid, 0)
    if step.action == "adopt":
        return Cursor("polling", step.uidvalidity, max(step.uidnext - 1, 0), cursor.resets + 1)
    resets = cursor.resets + 1 if step.reset else 0
    if step.action == "range":
        last = max(cursor.last_uid, stored_up_to or 0)
        if complete:
            last = max(last, step.uidnext - 1)
        return Cursor("polling", cursor.uidvalidity, last, resets if complete else cursor.resets)
    # window: the old cursor stays until the whole window is stored (a crash re-reads the window).
    if not complete:
        return cursor
    return Cursor("polling", step.uidvalidity, max(step.uidnext - 1, stored_up_to or 0), resets)
