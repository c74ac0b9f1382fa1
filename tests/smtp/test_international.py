"""Internationalized addresses on the wire (``kit.addresses``, ``smtp.transaction``), against real aiosmtpd
servers with and without SMTPUTF8: an IDN domain goes as IDNA A-labels and needs nothing from the server;
a non-ASCII local part goes with SMTPUTF8 (RFC 6531), or fails that one message with
``smtp.smtputf8_unsupported`` before anything is written, the connection staying usable."""

from __future__ import annotations

import pytest

from nimbus_api.kit.addresses import ascii_domain, needs_smtputf8, wire_address
from nimbus_api.smtp.client import SmtpServer, connect, transmit
from nimbus_api.smtp.errors import SmtpError
from tests.smtp.conftest import MakeNet, Serve

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def test_wire_forms() -> None:
    assert ascii_domain("bücher.test") == "xn--bcher-kva.test"
    assert ascii_domain("Example.ORG") == "Example.ORG"  # ASCII is left as it is
    assert wire_address("erin@bücher.test") == "erin@xn--bcher-kva.test"
    assert wire_address("zoë@bücher.test") == "zoë@xn--bcher-kva.test"
    assert wire_address("ada@example.org") == "ada@example.org"
    assert not needs_smtputf8("erin@bücher.test")
    assert needs_smtputf8("zoë@example.org")
    assert ascii_domain("faß.de") == "xn--fa-hia.de"  # IDNA 2008, not 2003's "fass.de"


def _server(port: int) -> SmtpServer:
    return SmtpServer(host="127.0.0.1", port=port, mode="none", username=None, password=None)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one_by_one"])
async def test_an_idn_domain_goes_as_a_labels_without_smtputf8(
    serve: Serve, make_net: MakeNet, pipelining: bool
) -> None:
    server = await serve(smtputf8=False, pipelining=pipelining)
    conn = await connect(_server(server.port), make_net(server.port))
    try:
        reply = await transmit(conn, sender="ada@bücher.test", recipients=["erin@bücher.test"], message=MESSAGE)
    finally:
        conn.close()
    assert reply.code == 250
    (envelope,) = server.messages
    assert envelope.mail_from == "ada@xn--bcher-kva.test"
    assert envelope.rcpt_tos == ["erin@xn--bcher-kva.test"]
    assert "SMTPUTF8" not in envelope.mail_options


async def test_a_non_ascii_local_part_goes_with_smtputf8(serve: Serve, make_net: MakeNet) -> None:
    server = await serve()
    conn = await connect(_server(server.port), make_net(server.port))
    try:
        await transmit(conn, sender="ada@example.org", recipients=["zoë@bücher.test"], message=MESSAGE)
        await transmit(conn, sender="ada@example.org", recipients=["grace@example.org"], message=MESSAGE)
    finally:
        conn.close()
    first, second = server.messages
    assert first.rcpt_tos == ["zoë@xn--bcher-kva.test"]
    assert "SMTPUTF8" in first.mail_options
    assert second.rcpt_tos == ["grace@example.org"]
    assert "SMTPUTF8" not in second.mail_options  # per transaction, only where it is needed


async def test_without_smtputf8_only_that_message_fails_and_the_connection_goes_on(
    serve: Serve, make_net: MakeNet
) -> None:
    server = await serve(smtputf8=False)
    conn = await connect(_server(server.port), make_net(server.port))
    try:
        with pytest.raises(SmtpError) as caught:
            await transmit(conn, sender="ada@example.org", recipients=["zoë@example.org"], message=MESSAGE)
        assert caught.value.code == "smtp.smtputf8_unsupported"
        assert caught.value.stage == "rcpt"
        assert caught.value.hint and "SMTPUTF8" in caught.value.hint
        assert conn.is_connected
        reply = await transmit(conn, sender="ada@example.org", recipients=["grace@example.org"], message=MESSAGE)
    finally:
        conn.close()
    assert reply.code == 250
    assert [e.rcpt_tos for e in server.messages] == [["grace@example.org"]]
    assert "MAIL" in server.commands and server.commands.count("MAIL") == 1  # nothing written for zoë


async def test_a_sender_that_needs_smtputf8_fails_at_mail(serve: Serve, make_net: MakeNet) -> None:
    server = await serve(smtputf8=False)
    conn = await connect(_server(server.port), make_net(server.port))
    try:
        with pytest.raises(SmtpError) as caught:
            await transmit(conn, sender="zoë@example.org", recipients=["grace@example.org"], message=MESSAGE)
    finally:
        conn.close()
    assert (caught.value.code, caught.value.stage) == ("smtp.smtputf8_unsupported", "mail")
