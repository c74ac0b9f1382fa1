"""The sync against real Dovecot mailboxes: new mail is stored once, flags stay, Junk is read, the
cursor follows, UIDVALIDITY changes and locale folders, our own mail skipped, broken mail stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import EmailAccount
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import Account, RunnerFactory, deliver, folders, inbound, mail, sync_row

Connect = Callable[..., Awaitable[Account]]


async def test_new_mail_is_stored_once_and_the_cursor_follows(
    connect: Connect, make_runner: RunnerFactory, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    deliver(mail_world, account, mail("first"))
    deliver(mail_world, account, mail("second"))
    runner = make_runner()
    await runner.lease_round()
    assert account.id in runner.held
    await runner.poll_now(account.id)
    rows = await inbound(sessionmaker, account.id)
    assert [r.subject for r in rows] == ["first", "second"]
    assert {r.folder for r in rows} == {"INBOX"} and all(r.kind == "other" for r in rows)
    cursors = await folders(sessionmaker, account.id)
    assert cursors["INBOX"].state == "polling" and cursors["INBOX"].last_uid == rows[-1].uid
    assert cursors["Junk"].state == "polling"
    status = await sync_row(sessionmaker, account.id)
    assert status.status == "ok" and status.last_success_at is not None and status.messages_stored == 2

    await runner.poll_now(account.id)  # nothing new: STATUS only
    assert len(await inbound(sessionmaker, account.id)) == 2
    deliver(mail_world, account, mail("third"))
    deliver(mail_world, account, mail("in junk"), folder="Junk")
    await runner.poll_now(account.id)
    rows = await inbound(sessionmaker, account.id)
    assert sorted(r.subject or "" for r in rows) == ["first", "in junk", "second", "third"]
    assert {r.subject: r.folder for r in rows}["in junk"] == "Junk"
    # BODY.PEEK: the user's mail is still unread
    listing = mail_world.dovecot.doveadm("fetch", "-u", account.email, "flags", "mailbox", "INBOX", "all")
    assert "\\Seen" not in listing


async def test_uidvalidity_change_rereads_the_window_without_duplicates(
    connect: Connect, make_runner: RunnerFactory, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    deliver(mail_world, account, mail("before", message_id="before@example.org"))
    runner = make_runner()
    await runner.lease_round()
    await runner.poll_now(account.id)
    old = (await folders(sessionmaker, account.id))["INBOX"].uidvalidity
    # a new UIDVALIDITY for INBOX (as after a server migration), then one more message
    mail_world.dovecot.doveadm("mailbox", "update", "-u", account.email, "--uid-validity", str(old + 1000), "INBOX")
    deliver(mail_world, account, mail("after"))
    await runner.poll_now(account.id)
    rows = await inbound(sessionmaker, account.id)
    assert sorted(r.subject or "" for r in rows) == ["after", "before"]  # "before" not stored twice
    cursor = (await folders(sessionmaker, account.id))["INBOX"]
    assert cursor.uidvalidity == old + 1000 and cursor.resets == 1


async def test_a_locale_folder_is_read(
    connect: Connect, make_runner: RunnerFactory, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    mail_world.dovecot.create_folder(account.email, "Posteingang")
    async with sessionmaker() as session:
        await session.execute(
            update(EmailAccount).where(EmailAccount.id == account.id).values(imap_folder="Posteingang")
        )
        await session.commit()
    deliver(mail_world, account, mail("hallo"), folder="Posteingang")
    deliver(mail_world, account, mail("not read: INBOX is not the configured folder"))
    runner = make_runner()
    await runner.lease_round()
    await runner.poll_now(account.id)
    rows = await inbound(sessionmaker, account.id)
    assert [(r.folder, r.subject) for r in rows] == [("Posteingang", "hallo")]


async def test_our_own_mail_is_not_inbound_and_broken_mail_does_not_stop_the_sync(
    connect: Connect, make_runner: RunnerFactory, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect()
    deliver(mail_world, account, mail("connection test", X_Nimbus_Verification="abc", sender=account.email))
    deliver(mail_world, account, b"\xff\xfe\x00 not a message at all \x81\r\n")
    deliver(
        mail_world, account, b'Content-Type: multipart/mixed; boundary="zz"\r\nSubject: broken\r\n\r\n--zz\r\nno end'
    )
    big = mail("big one") + b"X" * (3 * 1024 * 1024) + b"\r\n"
    deliver(mail_world, account, big)
    deliver(mail_world, account, mail("fine"))
    runner = make_runner()
    await runner.lease_round()
    await runner.poll_now(account.id)
    rows = await inbound(sessionmaker, account.id)
    subjects = [r.subject for r in rows]
    assert "connection test" not in subjects
    assert "fine" in subjects and "broken" in subjects and len(rows) == 4
    [truncated] = [r for r in rows if r.subject == "big one"]
    assert truncated.truncated and truncated.size > 3 * 1024 * 1024 and len(truncated.raw) < 400 * 1024
    assert all(r.kind in ("other", "reply") for r in rows)
    assert (await sync_row(sessionmaker, account.id)).status == "ok"
