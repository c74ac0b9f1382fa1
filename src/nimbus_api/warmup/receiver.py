"""The receiving inbox acts on the warmup mail its sync recorded: like a person who likes the sender.

For each received, not yet handled row of an inbox (one IMAP connection per inbox and run, its password
decrypted through the vault, audited, purpose ``warmup``), in the folder where it landed, found by its
Message-ID (``UID SEARCH HEADER``, so a UID that changed meanwhile does not matter):

* ``\\Seen`` always, ``\\Flagged`` for a share of them (``NIMBUS_WARMUP_FLAG_SHARE``);
* landed in Junk: moved to the inbox's folder (``UID MOVE``, or COPY + ``\\Deleted`` + UID EXPUNGE where
  MOVE is missing): ``rescued``, the signal that the sender's mail is being taken out of spam;
* a share of them (``NIMBUS_WARMUP_REPLY_SHARE``) is answered in thread: a ``planned`` reply row from this
  inbox to the sender (``Re:``, ``In-Reply-To``, ``References``), sent later by the sender task like any
  warmup message (marked, counted in this inbox's warmup count, never in its campaign budget), unless
  this inbox's warmup is paused, its day is full, or the thread is ``NIMBUS_WARMUP_MAX_THREAD_DEPTH`` deep.

The flag and reply decisions come from the row's seed, so a run that is repeated after a crash (the IMAP
steps are idempotent: setting a flag twice, moving what is already gone) decides the same way; the reply
row is unique per parent. The row is marked handled, with what was done, after the IMAP steps.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from nimbus_api.imap import ImapError, ImapServer, ImapSession, imap_session, special_use
from nimbus_api.kit.db import utc_day, utcnow
from nimbus_api.models import EmailAccount, WarmupMessage
from nimbus_api.oauth.sources import LoginUnavailable, auth_kind, login_secret
from nimbus_api.sending.mime import new_message_id
from nimbus_api.warmup import phrases
from nimbus_api.warmup.pause import can_send
from nimbus_api.warmup.planner import daily_limit
from nimbus_api.warmup.sender import WARMUP_ACTOR, WarmupDeps

log = structlog.get_logger(__name__)
MAX_PER_RUN = 50


@dataclass
class Handled:
    row_id: uuid.UUID
    found: bool
    rescued: bool
    flagged: bool


def decisions(row: WarmupMessage, flag_share: float, reply_share: float) -> tuple[bool, bool]:
    """``(flag, reply)`` for a received row, the same on every run (from its seed)."""
    rng = random.Random(row.seed + 1)  # noqa: S311 - a share, not a secret
    return rng.random() < flag_share, rng.random() < reply_share


async def _act(
    imap: ImapSession, row: WarmupMessage, inbox: str, junk: str | None, flag: bool, *, use_move: bool
) -> Handled:
    where = junk if row.landed == "junk" and junk is not None else inbox
    needle = f"<{row.message_id_header}>"
    await imap.select(where)
    uids = await imap.search_header("Message-ID", needle)
    if not uids and where != inbox:  # already moved (by a person, or a run that crashed after the move)
        where = inbox
        await imap.select(where)
        uids = await imap.search_header("Message-ID", needle)
    if not uids:
        return Handled(row.id, found=False, rescued=False, flagged=False)
    await imap.add_flags(uids, ["\\Seen", "\\Flagged"] if flag else ["\\Seen"])
    rescued = False
    if where != inbox:
        await imap.move(uids, inbox, use_move=use_move)
        rescued = True
    return Handled(row.id, found=True, rescued=rescued, flagged=flag)


def reply_values(
    row: WarmupMessage, me: EmailAccount, them: EmailAccount, now: datetime, delay_max: int
) -> dict[str, object]:
    rng = random.Random(row.seed + 2)  # noqa: S311
    seed = rng.getrandbits(62)
    subject = phrases.compose_reply(seed, subject=row.subject, sender_name="", recipient_name="").subject
    parent = f"<{row.message_id_header}>"
    references = f"{row.references} {parent}" if row.references else parent
    return {
        "sender_id": me.id,
        "recipient_id": them.id,
        "parent_id": row.id,
        "day": utc_day(now),
        "slot": None,
        "depth": row.depth + 1,
        "seed": seed,
        "subject": subject[:300],
        "message_id_header": new_message_id(me.email.rpartition("@")[2].lower()).strip("<>"),
        "in_reply_to": parent,
        "references": " ".join(references.split()[-20:]),
        "state": "planned",
        "send_at": now + timedelta(seconds=rng.uniform(0, delay_max * 60)),
        "created_at": now,
    }


async def handle_inbox(deps: WarmupDeps, account_id: uuid.UUID, *, use_move: bool = True) -> int:
    """Handle one inbox's received warmup rows; returns how many were handled."""
    settings = deps.settings
    async with deps.sessionmaker() as session:
        account = await session.get_one(EmailAccount, account_id)
        rows = list(
            await session.scalars(
                select(WarmupMessage)
                .where(
                    WarmupMessage.recipient_id == account_id,
                    WarmupMessage.received_at.is_not(None),
                    WarmupMessage.handled_at.is_(None),
                )
                .order_by(WarmupMessage.received_at)
                .limit(MAX_PER_RUN)
            )
        )
        if not rows:
            return 0
        password = None
        if account.imap_host is not None and account.imap_port is not None:
            try:
                password = await login_secret(
                    session, deps.vault, deps.settings, account, "imap_password", actor=WARMUP_ACTOR, purpose="warmup"
                )
            except LoginUnavailable:  # no token now: the messages wait for one (a dead grant: for a person)
                await session.commit()  # the audit rows
                return 0
        if password is None:  # no IMAP any more: nothing can be done for these, and nothing will be
            for row in rows:
                row.handled_at = utcnow()
            await session.commit()
            return len(rows)
        await session.commit()  # the audit row
    server = ImapServer(
        host=account.imap_host or "",
        port=account.imap_port or 993,
        mode=account.imap_mode or "ssl",  # type: ignore[arg-type]
        username=account.imap_username or account.email,
        password=password,
        folder=account.imap_folder or "INBOX",
        allow_plaintext_auth=account.imap_allow_plaintext_auth,
        auth_mechanism=auth_kind(account),
    )
    del password
    handled: list[tuple[WarmupMessage, Handled, bool]] = []
    try:
        async with imap_session(server, deps.net) as imap:
            junk_folder = special_use(await imap.list_folders(), "\\Junk")
            junk = junk_folder.name if junk_folder is not None else None
            for row in rows:
                flag, reply = decisions(row, settings.warmup_flag_share, settings.warmup_reply_share)
                done = await _act(imap, row, server.folder, junk, flag, use_move=use_move)
                handled.append((row, done, reply))
    except ImapError as exc:
        log.info("warmup_receiver_imap_failed", account_id=str(account_id), code=exc.code)
        if not handled:
            return 0
    now = utcnow()
    async with deps.sessionmaker() as session:
        me = await session.get_one(EmailAccount, account_id)
        used = (
            await session.scalar(
                select(func.count()).where(WarmupMessage.sender_id == account_id, WarmupMessage.day == utc_day(now))
            )
            or 0
        )
        room = daily_limit(me, settings.warmup_daily_limit) - used
        for row, done, reply in handled:
            fresh = await session.get_one(WarmupMessage, row.id)
            fresh.handled_at = now
            fresh.rescued = done.rescued
            fresh.flagged = done.flagged
            wants = reply and done.found and row.depth < settings.warmup_max_thread_depth
            if wants and room > 0 and can_send(me, deps.thresholds):
                them = await session.get(EmailAccount, row.sender_id)
                if them is not None:
                    values = reply_values(row, me, them, now, settings.warmup_reply_delay_max_minutes)
                    stmt = insert(WarmupMessage).values(**values).on_conflict_do_nothing(index_elements=["parent_id"])
                    await session.execute(stmt)
                    room -= 1
        await session.commit()
    return len(handled)


async def handle_pending(deps: WarmupDeps, *, limit: int = 20) -> int:
    """Handle the received warmup rows of up to ``limit`` inboxes; returns how many rows were handled."""
    async with deps.sessionmaker() as session:
        inboxes = list(
            await session.scalars(
                select(WarmupMessage.recipient_id)
                .where(WarmupMessage.received_at.is_not(None), WarmupMessage.handled_at.is_(None))
                .group_by(WarmupMessage.recipient_id)
                .limit(limit)
            )
        )
    total = 0
    for account_id in inboxes:
        total += await handle_inbox(deps, account_id)
    return total
