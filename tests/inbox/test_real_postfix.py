"""A real bounce from a real MTA through the whole loop: our message, re-sent through a private Postfix
whose next hop refuses the recipient (550 5.1.1), comes back as Postfix's own RFC 3464 report into the
inbox's Dovecot mailbox; the sync reads it, and the address is suppressed, the message bounced, once. A
delay warning from the same Postfix counts nothing. Also the out-of-office formats of Exchange and Gmail
in several languages, submitted over SMTP (the mail world's server) like any mail."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator

import aiosmtplib
import pytest

from tests.inbox.conftest import Loop
from tests.mailworld.ooo_messages import exchange_ooo, gmail_vacation
from tests.servers.mail_loop import MailLoop, mail_loop_or_skip
from tests.servers.mail_world import SMTP_HOST, SMTP_PASSWORD, MailWorld


@pytest.fixture(scope="module")
def postfix_loop(mail_world: MailWorld) -> Iterator[MailLoop]:
    with mail_loop_or_skip(
        mail_world.certs,
        remotes={"gone": "550 5.1.1 <rcpt>: Recipient address rejected: User unknown in virtual mailbox table"},
        routes={
            # the contacts' domain: a next hop that refuses every recipient
            "example.org": "remote:gone",
            # the inbox's domain: delivered into the mail world's Dovecot, where the sync reads it
            "example.test": f"lmtp:inet:127.0.0.1:{mail_world.dovecot.ports.lmtp}",
        },
        deferred_domains=["slow.example"],
    ) as loop:
        yield loop


def _sent_bytes(loop: Loop, contact: str) -> bytes:
    for envelope in loop.world.smtp.messages:
        if contact in envelope.rcpt_tos:
            return envelope.original_content or b""
    raise AssertionError(f"nothing was sent to {contact}")


async def _until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_a_real_postfix_bounce_suppresses_once(loop: Loop, postfix_loop: MailLoop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    # the relay hop of our message: Postfix, whose next hop refuses the address
    postfix_loop.send(_sent_bytes(loop, grace), sender=loop.inbox_email, recipients=[grace])

    async def arrived() -> bool:
        await loop.sync()
        return bool(await loop.inbound())

    await _until(arrived)
    [row] = await loop.inbound()
    assert row.kind == "bounce" and row.match_method == "message_id"
    assert row.sent_message_id == loop.sent[grace].id
    assert "postfix" in row.raw.decode(errors="replace").lower()  # Postfix's own report
    [message, *_] = await loop.messages(grace)
    assert (message.state, message.reply_enhanced) == ("bounced", "5.1.1")
    assert (await loop.enrollment(grace)).status == "bounced"
    [bounced] = await loop.events("message.bounced")
    assert bounced["kind"] == "hard" and bounced["reason"] == "userunknown"
    await loop.sync()
    assert len(await loop.events("message.bounced")) == 1


async def test_a_real_postfix_delay_warning_counts_nothing(loop: Loop, postfix_loop: MailLoop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    raw = _sent_bytes(loop, grace).replace(grace.encode(), b"late@slow.example")
    postfix_loop.send(raw, sender=loop.inbox_email, recipients=["late@slow.example"])

    async def arrived() -> bool:
        await loop.sync()
        return bool(await loop.inbound())

    await _until(arrived)
    rows = await loop.inbound()
    assert {r.kind for r in rows} == {"delivery_report"}
    assert rows[0].sent_message_id == loop.sent[grace].id  # matched by the quoted Message-ID
    [message, *_] = await loop.messages(grace)
    assert message.state == "sent" and await loop.events("message.bounced") == []


@pytest.mark.parametrize(
    ("vendor", "lang"), [("exchange", "en"), ("exchange", "de"), ("exchange", "fr"), ("gmail", "es"), ("gmail", "it")]
)
async def test_out_of_office_formats_submitted_over_smtp(loop: Loop, vendor: str, lang: str) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    build = exchange_ooo if vendor == "exchange" else gmail_vacation
    ooo = build(
        lang,
        from_addr=grace,
        to_addr=loop.inbox_email,
        subject=loop.sent[grace].subject,
        in_reply_to=loop.sent[grace].message_id_header,
    )
    # submitted over SMTP (the mail world's server runs in this event loop: an async client) and delivered
    # into the inbox's Dovecot mailbox like any mail from outside
    await aiosmtplib.send(
        ooo.as_bytes(),
        sender=grace,
        recipients=[loop.inbox_email],
        hostname=SMTP_HOST,  # the certificate's name; the socket is already connected to loopback
        sock=socket.create_connection(("127.0.0.1", loop.world.smtp.port)),
        start_tls=True,
        tls_context=ssl.create_default_context(cafile=str(loop.world.certs.ca_file)),
        username=loop.inbox_email,
        password=SMTP_PASSWORD,
    )
    await loop.sync()
    [row] = await loop.inbound()
    assert row.kind == "auto_reply", (row.kind, row.reasons)
    enrollment = await loop.enrollment(grace)
    assert enrollment.auto_replied_at is not None and enrollment.status == "active"
