"""Flags and moves (the warmup receiver's commands), against a real Dovecot: ``add_flags`` sets
``\\Seen``/``\\Flagged``, ``move`` takes a message out of Junk with UID MOVE (RFC 6851) or, where MOVE is
not used, with COPY + ``\\Deleted`` + UID EXPUNGE; the flags go with the message either way."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nimbus_api.imap import ImapServer, ImapSession, imap_session
from nimbus_api.kit.net import NetContext
from tests.imap.conftest import User
from tests.servers.dovecot import Dovecot

ServerFor = Callable[..., ImapServer]


def _message(mid: str) -> bytes:
    return f"From: a@example.test\r\nSubject: hello\r\nMessage-ID: <{mid}>\r\n\r\nhi\r\n".encode()


async def _flags(imap: ImapSession, folder: str) -> dict[str, str]:
    """Message-ID -> FLAGS of every message in ``folder``."""
    await imap.select(folder, readonly=True)
    uids = await imap.uids_from(1)
    heads = await imap.fetch_headers(uids, ["Message-ID"])
    reply = await imap._step(imap._p.fetch("1:*", "(UID FLAGS)", by_uid=True), "FETCH") if uids else None
    flags_by_uid: dict[int, str] = {}
    for line in reply.lines if reply is not None else []:
        text = bytes(line).decode(errors="replace")
        if "FETCH" in text and "UID " in text:
            uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
            flags_by_uid[uid] = text.split("FLAGS (")[1].split(")")[0]
    await imap.unselect()
    return {str(heads[u]["Message-ID"]).strip("<>"): flags_by_uid.get(u, "") for u in uids}


@pytest.mark.parametrize("use_move", [True, False])
async def test_move_out_of_junk_keeps_the_flags(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot, use_move: bool
) -> None:
    dovecot.deliver_lmtp(user.name, _message("stay@example.test"), folder="Junk")
    dovecot.deliver_lmtp(user.name, _message("rescue@example.test"), folder="Junk")
    async with imap_session(server_for(user, "ssl"), net) as imap:
        assert "MOVE" in imap.capabilities
        await imap.select("Junk")
        uids = await imap.search_header("Message-ID", "<rescue@example.test>")
        assert len(uids) == 1
        await imap.add_flags(uids, ["\\Seen", "\\Flagged"])
        way = await imap.move(uids, "INBOX", use_move=use_move)
        assert way == ("move" if use_move else "copy")
        await imap.move([999], "INBOX", use_move=use_move)  # a UID no longer there: nothing happens
        junk = await _flags(imap, "Junk")
        inbox = await _flags(imap, "INBOX")
    assert list(junk) == ["stay@example.test"] and "\\Seen" not in junk["stay@example.test"]
    assert list(inbox) == ["rescue@example.test"]
    assert set(inbox["rescue@example.test"].split()) - {"\\Recent"} == {"\\Seen", "\\Flagged"}


async def test_flags_and_moves_need_a_writable_folder(user: User, server_for: ServerFor, net: NetContext) -> None:
    async with imap_session(server_for(user, "ssl"), net) as imap:
        await imap.select("INBOX", readonly=True)
        with pytest.raises(RuntimeError):
            await imap.add_flags([1], ["\\Seen"])
        with pytest.raises(RuntimeError):
            await imap.move([1], "Junk")
        await imap.select("INBOX")
        with pytest.raises(ValueError):
            await imap.add_flags([1], ["\\Seen) (x"])
