"""The IMAP adapter against a real Dovecot (and, for what Dovecot will not do, a small real fake).

Every connection goes through the product path: name resolved by our resolver (the test DNS
responder), checked by the egress policy, pinned, TLS verified against the name.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable

import pytest

from nimbus_api.imap import (
    CODES,
    Folder,
    ImapError,
    ImapServer,
    decode_folder_name,
    encode_folder_name,
    find_message,
    imap_session,
    special_use,
)
from nimbus_api.imap.responses import parse_list, uid_set
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.net import NetContext
from tests.imap.conftest import IMAP_HOST, FakeImap, SilentServer, User, message
from tests.servers.dovecot import UNTRUSTED_SNI, Dovecot

ServerFor = Callable[..., ImapServer]
NetFor = Callable[..., NetContext]


def fake_server(port: int, mode: str = "none", **fields: object) -> ImapServer:
    values: dict[str, object] = {
        "host": IMAP_HOST,
        "port": port,
        "mode": mode,
        "username": "someone@example.test",
        "password": Secret("Sup3r-secret"),
        "allow_plaintext_auth": True,
    }
    values.update(fields)
    return ImapServer(**values)  # type: ignore[arg-type]


async def expect_error(code: str, server: ImapServer, net: NetContext) -> ImapError:
    assert code in CODES or code.startswith("imap.")
    with pytest.raises(ImapError) as caught:
        async with imap_session(server, net):
            pass
    assert caught.value.code == code, caught.value
    return caught.value


# --------------------------------------------------------------------------------------------------
# Logging in, per mode


@pytest.mark.parametrize("mode", ["ssl", "starttls", "none"])
async def test_login_list_select_per_mode(
    mode: str, user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    dovecot.deliver_lmtp(user.name, message("hello"))
    server = server_for(user, mode, allow_plaintext_auth=(mode == "none"))
    async with imap_session(server, net) as imap:
        # The post-login list replaced the pre-login one (Dovecot adds UIDPLUS and drops AUTH= after login).
        assert {"IMAP4REV1", "UIDPLUS", "SPECIAL-USE"} <= imap.capabilities
        assert not any(cap.startswith("AUTH=") for cap in imap.capabilities)
        names = [f.name for f in await imap.list_folders()]
        assert {"INBOX", "Junk", "Sent", "Drafts", "Trash"} <= set(names)
        status = await imap.select(server.folder)
        assert (status.name, status.exists) == ("INBOX", 1)
        assert status.uidnext == 2 and status.uidvalidity > 0
        assert imap.selected == "INBOX"


async def test_plaintext_auth_refused_before_any_login(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    error = await expect_error("imap.plaintext_auth_refused", server_for(user, "none"), net)
    assert user.password not in str(error)
    # The same mailbox logs in once allowed; Dovecot's log then shows that one login and no earlier
    # authentication attempt for the user (auth_verbose logs every attempt with the user name).
    async with imap_session(server_for(user, "none", allow_plaintext_auth=True), net):
        pass
    for _ in range(150):  # Dovecot's log process writes asynchronously
        if f"Login: user=<{user.name}>" in dovecot.log_text():
            break
        await asyncio.sleep(0.02)
    mentions = [line for line in dovecot.log_text().splitlines() if user.name in line]
    assert any(f"Login: user=<{user.name}>" in line for line in mentions)
    assert not any(re.search(r"auth failed|Password mismatch|no auth attempts", line) for line in mentions)


async def test_plaintext_refusal_sends_no_login_command(net_for: NetFor) -> None:
    async with FakeImap() as fake:
        await expect_error(
            "imap.plaintext_auth_refused", fake_server(fake.port, allow_plaintext_auth=False), net_for(fake.port)
        )
        async with FakeImap(capabilities="IMAP4rev1 LOGINDISABLED") as disabled:
            await expect_error("imap.plaintext_auth_refused", fake_server(disabled.port), net_for(disabled.port))
    assert "LOGIN" not in fake.commands + disabled.commands
    assert not any("Sup3r-secret" in line for line in fake.received + disabled.received)


async def test_wrong_password_is_auth_failed(user: User, server_for: ServerFor, net: NetContext) -> None:
    wrong = "not-" + user.password
    error = await expect_error("imap.auth_failed", server_for(user, "ssl", password=Secret(wrong)), net)
    assert error.server_text is not None and "Authentication failed" in error.server_text
    assert error.data == {"response_code": "AUTHENTICATIONFAILED"}
    # The next login from the same address is not slowed down (no auth penalty in the test Dovecot).
    started = time.monotonic()
    async with imap_session(server_for(user, "ssl"), net):
        pass
    assert time.monotonic() - started < 1.0


async def test_server_text_never_carries_the_password(net_for: NetFor) -> None:
    echo = '{tag} NO [AUTHENTICATIONFAILED] LOGIN someone@example.test "Sup3r-secret" rejected\r\n'
    async with FakeImap(replies={"LOGIN": echo}) as fake:
        error = await expect_error("imap.auth_failed", fake_server(fake.port), net_for(fake.port))
    assert "LOGIN" in fake.commands
    assert error.server_text is not None and "[redacted]" in error.server_text
    assert "Sup3r-secret" not in f"{error} {error.server_text} {error.detail} {error!r}"


# --------------------------------------------------------------------------------------------------
# Folders


async def test_folder_not_found_lists_existing_folders(user: User, server_for: ServerFor, net: NetContext) -> None:
    async with imap_session(server_for(user), net) as imap:
        with pytest.raises(ImapError) as caught:
            await imap.select("Nonexistent")
        assert caught.value.code == "imap.folder_not_found"
        assert {"INBOX", "Junk", "Sent"} <= set(caught.value.data["folders"])
        assert "INBOX" in caught.value.detail and "Nonexistent" in caught.value.detail
        # The session stays usable after a failed SELECT.
        assert (await imap.select("INBOX")).exists == 0
    # The same through imap_session's caller: status of a missing folder.
    async with imap_session(server_for(user), net) as imap:
        with pytest.raises(ImapError, match="folder_not_found"):
            await imap.status("Nope")


async def test_locale_folder_selected(user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot) -> None:
    dovecot.create_folder(user.name, "Posteingang")
    dovecot.deliver_maildir(user.name, message("p1"), folder="Posteingang")
    async with imap_session(server_for(user, folder="Posteingang"), net) as imap:
        status = await imap.select("Posteingang")
        assert (status.name, status.exists) == ("Posteingang", 1)


async def test_utf7_folder_names_decoded_and_usable(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    dovecot.create_folder(user.name, "Entwürfe")
    dovecot.create_folder(user.name, "Junk E-mail")
    dovecot.create_folder(user.name, "Archiv/2024 & älter")
    dovecot.deliver_maildir(user.name, message("e1"), folder="Entwürfe")
    async with imap_session(server_for(user), net) as imap:
        folders = {f.name: f for f in await imap.list_folders()}
        assert {"Entwürfe", "Junk E-mail", "Archiv/2024 & älter"} <= set(folders)
        assert folders["Archiv/2024 & älter"].delimiter == "/"
        assert (await imap.select("Entwürfe")).exists == 1
        assert (await imap.status("Archiv/2024 & älter")).exists == 0


def test_modified_utf7_codec() -> None:
    cases = {
        "INBOX": "INBOX",
        "Entwürfe": "Entw&APw-rfe",
        "A & B": "A &- B",
        "日本語": "&ZeVnLIqe-",
        "Ünïcödé/Sub": "&ANw-n&AO8-c&APY-d&AOk-/Sub",
    }
    for name, wire in cases.items():
        assert encode_folder_name(name) == wire
        assert decode_folder_name(wire) == name
    assert decode_folder_name("Broken&zz") == "Broken&zz"  # malformed stays as sent
    assert decode_folder_name("Entwürfe") == "Entwürfe"  # servers that send UTF-8


def test_parse_list_quoted_atom_and_literal() -> None:
    lines: list[bytes | bytearray] = [
        b'(\\HasNoChildren \\Junk) "/" Junk',
        b'(\\HasNoChildren) "/" "Junk E-mail"',
        b"(\\Noselect \\HasChildren) NIL {9}",
        bytearray(b'Odd "one"'),
        b'(\\HasNoChildren) "." "INBOX.Entw&APw-rfe"',
        b'(\\HasNoChildren) "/" inbox',
    ]
    folders = parse_list(lines)
    assert [(f.name, f.delimiter) for f in folders] == [
        ("Junk", "/"),
        ("Junk E-mail", "/"),
        ('Odd "one"', None),
        ("INBOX.Entwürfe", "."),
        ("INBOX", "/"),
    ]
    assert folders[0].has_flag("\\junk") and not folders[2].selectable


async def test_special_use_junk_from_server_flags(user: User, server_for: ServerFor, net: NetContext) -> None:
    async with imap_session(server_for(user), net) as imap:
        folders = await imap.list_folders()
        junk = imap.special_use(folders, "\\Junk")
        sent = imap.special_use(folders, "\\Sent")
    assert junk is not None and junk.name == "Junk" and junk.has_flag("\\Junk")
    assert sent is not None and sent.name == "Sent"


@pytest.mark.parametrize(
    ("names", "delimiter", "expected"),
    [
        (["INBOX", "[Gmail]", "[Gmail]/Spam", "[Gmail]/Sent Mail"], "/", "[Gmail]/Spam"),
        (["INBOX", "Junk E-mail", "Sent Items"], "/", "Junk E-mail"),
        (["INBOX", "INBOX.Spam", "INBOX.Drafts"], ".", "INBOX.Spam"),
        (["INBOX", "Spam-Ordner", "Gesendet"], "/", "Spam-Ordner"),
        (["INBOX", "Bulk Mail", "Junk"], "/", "Junk"),
        (["INBOX", "Archive"], "/", None),
    ],
)
def test_special_use_junk_by_name(names: list[str], delimiter: str, expected: str | None) -> None:
    folders = [Folder(name=n, flags=["\\HasNoChildren"], delimiter=delimiter) for n in names]
    found = special_use(folders, "\\Junk")
    assert (found.name if found else None) == expected


def test_special_use_prefers_flags_and_skips_noselect() -> None:
    folders = [
        Folder("Spam", ["\\Noselect"], "/"),
        Folder("Junk", [], "/"),
        Folder("Werbung", ["\\Junk"], "/"),
    ]
    assert special_use(folders, "\\Junk") == folders[2]
    assert special_use(folders[:2], "\\Junk") == folders[1]


# --------------------------------------------------------------------------------------------------
# STATUS, search, fetch, delete


async def test_status_uidnext_uidvalidity(user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot) -> None:
    for n in range(2):
        dovecot.deliver_lmtp(user.name, message(f"s{n}"))
    async with imap_session(server_for(user), net) as imap:
        status = await imap.status("INBOX")
        assert (status.exists, status.uidnext) == (2, 3)
        selected = await imap.select("INBOX", readonly=True)
        assert selected.uidvalidity == status.uidvalidity
        assert await imap.uids_from(status.uidnext) == []
        assert await imap.uids_from(2) == [2]
        junk = await imap.status("Junk")
        assert (junk.exists, junk.uidnext) == (0, 1)


async def test_search_header_finds_lmtp_message(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    token = secrets.token_hex(8)
    dovecot.deliver_lmtp(user.name, message("other-token"))
    dovecot.deliver_lmtp(user.name, message(token, subject="the one"))
    async with imap_session(server_for(user), net) as imap:
        await imap.select("INBOX", readonly=True)
        uids = await imap.search_header("X-Nimbus-Test", token)
        assert uids == [2]
        assert await imap.search_header("X-Nimbus-Test", "absent-" + token) == []
        headers = await imap.fetch_headers(uids, ["Subject", "X-Nimbus-Test"])
        assert headers[2]["Subject"] == "the one" and headers[2]["X-Nimbus-Test"] == token
        with pytest.raises(ValueError):
            await imap.search_header("Bad Header", token)


async def test_delete_removes_the_message(user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot) -> None:
    token = secrets.token_hex(8)
    dovecot.deliver_lmtp(user.name, message("keep"))
    dovecot.deliver_lmtp(user.name, message(token))
    async with imap_session(server_for(user), net) as imap:
        await imap.select("INBOX", readonly=True)
        uids = await imap.search_header("X-Nimbus-Test", token)
        assert uids
        await imap.delete(uids)  # re-selects read-write
        assert await imap.search_header("X-Nimbus-Test", token) == []
        assert (await imap.status("INBOX")).exists == 1  # the other message stays
    async with imap_session(server_for(user), net) as imap:
        await imap.select("INBOX")
        assert await imap.search_header("X-Nimbus-Test", token) == []


def test_uid_set() -> None:
    assert uid_set([7, 1, 2, 3, 3, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"


# --------------------------------------------------------------------------------------------------
# find_message


async def test_find_message_in_junk_reports_folder_and_time(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    token = secrets.token_hex(8)
    dovecot.deliver_lmtp(user.name, message("noise"))

    async def deliver_later() -> None:
        await asyncio.sleep(0.6)
        await asyncio.to_thread(dovecot.deliver_lmtp, user.name, message(token), folder="Junk")

    delivery = asyncio.create_task(deliver_later())
    found = await find_message(server_for(user), net, header="X-Nimbus-Test", token=token, timeout=8, delete=True)
    await delivery
    assert found is not None
    assert (found.folder, found.junk, found.uid) == ("Junk", True, 1)
    assert 0.6 <= found.seconds < 4
    async with imap_session(server_for(user), net) as imap:  # delete=True removed it
        assert (await imap.status("Junk")).exists == 0
        assert (await imap.status("INBOX")).exists == 1


async def test_find_message_in_inbox_already_there(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    token = secrets.token_hex(8)
    dovecot.deliver_lmtp(user.name, message(token))
    found = await find_message(
        server_for(user), net, header="X-Nimbus-Test", token=token, folders=["INBOX", "Junk"], timeout=5
    )
    assert found is not None and (found.folder, found.junk) == ("INBOX", False)
    assert found.seconds < 1


async def test_find_message_returns_none_after_timeout(user: User, server_for: ServerFor, net: NetContext) -> None:
    started = time.monotonic()
    found = await find_message(server_for(user), net, header="X-Nimbus-Test", token="never-sent", timeout=1.0)
    elapsed = time.monotonic() - started
    assert found is None
    assert 1.0 <= elapsed < 2.5


async def test_find_message_unknown_folder(user: User, server_for: ServerFor, net: NetContext) -> None:
    with pytest.raises(ImapError) as caught:
        await find_message(server_for(user), net, header="X-Nimbus-Test", token="t", folders=["Spam"], timeout=1)
    assert caught.value.code == "imap.folder_not_found" and "Junk" in caught.value.data["folders"]


# --------------------------------------------------------------------------------------------------
# TLS


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
async def test_untrusted_certificate(mode: str, user: User, server_for: ServerFor, net: NetContext) -> None:
    error = await expect_error("imap.tls_certificate_invalid", server_for(user, mode, host=UNTRUSTED_SNI), net)
    assert "self-signed" in error.detail or "self signed" in error.detail


async def test_certificate_checked_against_the_host_name_not_the_pinned_ip(
    user: User, server_for: ServerFor, net: NetContext
) -> None:
    # other.example.test resolves to 127.0.0.1 like imap.example.test, and the certificate covers
    # 127.0.0.1, but not that name: the connection goes to the pinned IP, the check uses the name.
    error = await expect_error("imap.tls_certificate_invalid", server_for(user, host="other.example.test"), net)
    assert "other.example.test" in error.detail or "mismatch" in error.detail.lower()


async def test_implicit_tls_against_plain_port(
    user: User, server_for: ServerFor, net: NetContext, dovecot: Dovecot
) -> None:
    await expect_error("imap.tls_handshake_failed", server_for(user, "ssl", port=dovecot.ports.imap), net)


async def test_starttls_unsupported(net_for: NetFor) -> None:
    async with FakeImap() as fake:
        error = await expect_error("imap.starttls_unsupported", fake_server(fake.port, "starttls"), net_for(fake.port))
    assert "STARTTLS" not in fake.commands and "LOGIN" not in fake.commands
    assert "ssl" in error.detail


async def test_starttls_refused_by_server(net_for: NetFor) -> None:
    refused = "{tag} NO STARTTLS is disabled here\r\n"
    async with FakeImap(capabilities="IMAP4rev1 STARTTLS", replies={"STARTTLS": refused}) as fake:
        error = await expect_error("imap.starttls_unsupported", fake_server(fake.port, "starttls"), net_for(fake.port))
    assert error.server_text == "STARTTLS is disabled here"
    assert "LOGIN" not in fake.commands


async def test_starttls_response_injection_refused(net_for: NetFor) -> None:
    injected = "{tag} OK Begin TLS negotiation now\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
    async with FakeImap(capabilities="IMAP4rev1 STARTTLS", replies={"STARTTLS": injected}) as fake:
        error = await expect_error("imap.tls_handshake_failed", fake_server(fake.port, "starttls"), net_for(fake.port))
    assert "injection" in error.detail
    assert "LOGIN" not in fake.commands


# --------------------------------------------------------------------------------------------------
# Network failures


@pytest.mark.parametrize("mode", ["none", "ssl"])
async def test_silent_server_times_out(mode: str, silent_server: SilentServer, net_for: NetFor) -> None:
    net = net_for(silent_server.port, connect_timeout=0.5, command_timeout=0.5)
    started = time.monotonic()
    error = await expect_error("imap.timeout", fake_server(silent_server.port, mode), net)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5, elapsed
    if mode == "none":
        assert "greeting" in error.detail and '"ssl"' in error.detail
    assert silent_server.accepted == 1 and await silent_server.wait_all_closed()


@pytest.mark.parametrize("mode", ["none", "ssl"])
async def test_cancel_while_opening_closes_the_socket(mode: str, silent_server: SilentServer, net_for: NetFor) -> None:
    async def open_session() -> None:
        async with imap_session(fake_server(silent_server.port, mode), net_for(silent_server.port)):
            pass

    with pytest.raises(TimeoutError):  # cancelled mid-handshake (ssl) or waiting for the greeting
        await asyncio.wait_for(open_session(), 0.2)
    assert silent_server.accepted == 1 and await silent_server.wait_all_closed()


async def test_bye_greeting_fails_fast(net_for: NetFor) -> None:
    async with FakeImap(greeting="* BYE Too many connections from your IP") as fake:
        started = time.monotonic()
        error = await expect_error("imap.protocol_error", fake_server(fake.port), net_for(fake.port))
    assert time.monotonic() - started < 1.0
    assert error.server_text == "* BYE Too many connections from your IP"


async def test_connection_refused(closed_port: int, net_for: NetFor) -> None:
    await expect_error("imap.connection_refused", fake_server(closed_port), net_for(closed_port))


async def test_host_not_allowed(user: User, server_for: ServerFor, net_for: NetFor, dovecot: Dovecot) -> None:
    # Loopback without an allowlist entry: refused before any connection is made.
    error = await expect_error(
        "imap.host_not_allowed", server_for(user), net_for(dovecot.ports.imaps, allow_loopback=False)
    )
    assert "127.0.0.1" not in error.detail  # refusals never reveal what the name resolved to
    # Loopback allowed, but not the port.
    await expect_error("imap.host_not_allowed", server_for(user), net_for(dovecot.ports.imap))


async def test_host_unresolvable(user: User, server_for: ServerFor, net: NetContext) -> None:
    await expect_error("imap.host_unresolvable", server_for(user, host="nowhere.invalid"), net)


# --------------------------------------------------------------------------------------------------
# Closing


async def test_connection_closed_on_exit_error_and_cancel(user: User, server_for: ServerFor, net: NetContext) -> None:
    server = server_for(user)
    async with imap_session(server, net) as imap:
        pass
    assert imap._p.closed.done() and not imap.usable

    with pytest.raises(RuntimeError):
        async with imap_session(server, net) as imap:
            raise RuntimeError("caller failed")
    assert imap._p.closed.done()

    entered = asyncio.Event()
    sessions = []

    async def hold() -> None:
        async with imap_session(server, net) as session:
            sessions.append(session)
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(hold())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert sessions[0]._p.closed.done()


async def test_session_unusable_after_timeout(net_for: NetFor) -> None:
    stall = "* 1 EXISTS\r\n"  # never a tagged reply
    async with FakeImap(replies={"LIST": stall}) as fake:
        net = net_for(fake.port, command_timeout=0.3)
        async with imap_session(fake_server(fake.port), net) as imap:
            with pytest.raises(ImapError, match="timeout"):
                await imap.list_folders()
            with pytest.raises(ImapError, match="no longer usable"):
                await imap.status("INBOX")
