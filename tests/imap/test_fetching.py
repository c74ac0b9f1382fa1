"""The fetch commands the sync uses, against a real Dovecot: sizes, whole messages, heads of big ones,
SEARCH SINCE; flags stay untouched (``BODY.PEEK``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nimbus_api.imap import ImapServer, imap_session
from nimbus_api.imap.responses import parse_fetch
from nimbus_api.kit.net import NetContext
from tests.imap.conftest import User
from tests.servers.dovecot import Dovecot

ServerFor = Callable[..., ImapServer]

PLAIN = b"From: a@example.test\r\nSubject: one\r\nMessage-ID: <one@example.test>\r\n\r\nhello\r\n"
BIG = (
    b"From: a@example.test\r\nSubject: two\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
    b"first part\r\n--XX\r\nContent-Type: application/octet-stream\r\n\r\n" + b"A" * 50_000 + b"\r\n--XX--\r\n"
)


async def test_sizes_raw_and_heads_leave_flags_alone(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    dovecot.deliver_lmtp(user.name, PLAIN)
    dovecot.deliver_lmtp(user.name, BIG)
    async with imap_session(server_for(user, "ssl"), net) as imap:
        await imap.select("INBOX", readonly=True)
        sizes = await imap.sizes_from(1)
        assert sorted(sizes) == [1, 2] and sizes[2] > 50_000
        assert await imap.sizes_from(3) == {}  # "3:*" matches UID 2 on the server: filtered
        raw = await imap.fetch_raw([1])
        assert raw[1].endswith(b"hello\r\n") and b"Message-ID: <one@example.test>" in raw[1]
        head = await imap.fetch_head([2], 4)
        header, mime, body = head[2]
        assert b"Subject: two" in header and mime.startswith(b"Content-Type: text/plain") and body == b"firs"
        assert await imap.search_since((datetime.now(UTC) - timedelta(days=2)).date()) == [1, 2]
        assert await imap.search_since((datetime.now(UTC) + timedelta(days=2)).date()) == []
        await imap.select("INBOX")
        flags = await imap._step(imap._p.fetch("1:*", "(UID FLAGS)", by_uid=True), "FETCH")
        assert all(b"\\Seen" not in bytes(line) for line in flags.lines)


def test_parse_fetch_reads_uid_after_the_literal() -> None:
    lines: list[bytes | bytearray] = [
        b"1 FETCH (BODY[] {5}",
        bytearray(b"hello"),
        b" UID 7 RFC822.SIZE 5)",
        b"2 FETCH (UID 8 BODY[HEADER] {3}",
        bytearray(b"a\r\n"),
        b" BODY[1]<0> {2}",
        bytearray(b"xy"),
        b")",
        b"Fetch completed.",
    ]
    items = parse_fetch(lines[:-1])
    assert [(i.uid, i.size) for i in items] == [(7, 5), (8, None)]
    assert items[0].sections == {"BODY[]": b"hello"}
    assert items[1].sections == {"BODY[HEADER]": b"a\r\n", "BODY[1]<0>": b"xy"}
