"""A mailbox's sync status after each poll, its next poll time, and ``account.sync_failed`` (once).

Successes are written in batches (``record_successes``: one statement for every poll that succeeded since
the last flush, a fraction of a second), so an idle poll costs two STATUS commands and no transaction of its
own; a failure is written at once, with its event when one is due.

``ok`` after a successful poll (failures and the notice cleared). After a failed one: ``failing``,
``consecutive_failures`` + 1, the error's ``imap.*`` code and detail, and the next poll pushed back:
the interval doubled per consecutive failure, with +-20 % jitter, capped by ``sync_backoff_max_seconds``
(never sooner than the interval), so a server that is down costs one connection attempt per backoff
step, not a hot loop. ``account.sync_failed`` is emitted once per failing streak: at once for failures
only a person can fix (``NEEDS_PERSON``: wrong password, a certificate, a folder that is gone), after
``NOTIFY_AFTER`` failures in a row for the others (a server down for minutes is not news; for ten
minutes it is).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.events.catalogue import AccountSyncFailedData
from nimbus_api.imap import ImapError
from nimbus_api.models import MailboxSync
from nimbus_api.sync.mailboxes import Mailbox

NEEDS_PERSON = frozenset(
    {
        "imap.auth_failed",
        "imap.plaintext_auth_refused",
        "imap.tls_certificate_invalid",
        "imap.folder_not_found",
        "imap.starttls_unsupported",
        "imap.host_not_allowed",
        "imap.host_unresolvable",
    }
)
NOTIFY_AFTER = 5
DETAIL_LIMIT = 500


def next_on_time(previous: datetime, interval: int, now: datetime) -> datetime:
    """The next poll in the mailbox's phase: ``previous + k * interval``, the first one after ``now``."""
    step = timedelta(seconds=interval)
    due = previous + step
    if due <= now:
        behind = (now - due) // step + 1
        due += step * behind
    return due


def backoff_delay(interval: int, failures: int, cap: float, rng: random.Random) -> float:
    """The wait after ``failures`` failures in a row: the interval doubled per failure, jittered by +-20 %
    so mailboxes of one dead server drift apart, and never over ``cap`` (jitter included: the setting is
    the longest wait, so a capped wait lies in 80..100 % of it)."""
    base = min(interval * 2.0 ** max(failures - 1, 0), cap)
    return max(float(interval), min(cap, base * rng.uniform(0.8, 1.2))) if failures > 1 else float(interval)


_SUCCESSES = text(
    """
    UPDATE mailbox_syncs s
    SET status = 'ok', last_poll_at = v.at, last_success_at = v.at, next_poll_at = v.due, consecutive_failures = 0,
        last_error_code = NULL, last_error_detail = NULL, failing_since = NULL, failure_notified_at = NULL,
        updated_at = v.at
    FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[]), CAST(:dues AS timestamptz[])) AS v(id, at, due)
    WHERE s.account_id = v.id AND s.lease_owner = :owner
    """
)


def succeeded(mailbox: Mailbox, now: datetime) -> datetime:
    """The in-memory side of a success: the next poll in phase, failures forgotten. The row follows in the
    next ``record_successes`` (a batch: an idle poll costs no transaction of its own)."""
    due = next_on_time(mailbox.next_poll_at, mailbox.interval, now)
    mailbox.next_poll_at = due
    mailbox.consecutive_failures = 0
    mailbox.failure_notified = False
    return due


async def record_successes(session: AsyncSession, owner: str, done: list[tuple[uuid.UUID, datetime, datetime]]) -> None:
    """Successful polls ``(account_id, at, next_poll_at)`` in one statement, for mailboxes ``owner`` holds."""
    if not done:
        return
    await session.execute(
        _SUCCESSES,
        {"ids": [d[0] for d in done], "ats": [d[1] for d in done], "dues": [d[2] for d in done], "owner": owner},
    )


async def record_failure(
    session: AsyncSession, mailbox: Mailbox, error: ImapError, now: datetime, *, cap: float, rng: random.Random
) -> datetime:
    failures = mailbox.consecutive_failures + 1
    due = now + timedelta(seconds=backoff_delay(mailbox.interval, failures, cap, rng))
    notify = not mailbox.failure_notified and (error.code in NEEDS_PERSON or failures >= NOTIFY_AFTER)
    detail = error.detail[:DETAIL_LIMIT]
    values: dict[str, object] = {
        "status": "failing",
        "last_poll_at": now,
        "next_poll_at": due,
        "consecutive_failures": failures,
        "last_error_code": error.code,
        "last_error_detail": detail,
        "updated_at": now,
    }
    if failures == 1:
        values["failing_since"] = now
    if notify:
        values["failure_notified_at"] = now
        events.emit(
            session,
            mailbox.workspace_id,
            "account.sync_failed",
            AccountSyncFailedData(
                account_id=mailbox.account_id, email=mailbox.email, error_code=error.code, detail=detail
            ),
        )
    await session.execute(update(MailboxSync).where(MailboxSync.account_id == mailbox.account_id).values(**values))
    mailbox.next_poll_at = due
    mailbox.consecutive_failures = failures
    mailbox.failure_notified = mailbox.failure_notified or notify
    return due
