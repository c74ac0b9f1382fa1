"""PIPELINING (RFC 2920) in the SMTP adapter, against a scripted server on a real loopback socket that
chooses how its replies travel: all of a group's replies in one segment (as Postfix answers), each in
its own segment after a pause (as aiosmtpd does), or out of the ordinary (DATA accepted after a refused
recipient). Also what ``transmit`` puts on the wire for addresses and content."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from nimbus_api.smtp.client import Outgoing, SmtpConnection, SmtpServer, connect, transmit
from nimbus_api.smtp.errors import SmtpError
from nimbus_api.smtp.pipelining import PipeliningProtocol
from nimbus_api.smtp.transaction import _dot_stuffed
from tests.smtp.conftest import MakeNet

GROUP = ("MAIL", "RCPT", "DATA")


@dataclass
class ScriptedServer:
    """Speaks just enough SMTP; ``reply(verb)`` decides each reply, ``split`` how the group's travel."""

    split: bool = False
    pipelining: bool = True
    reply: Callable[[str], str] = lambda verb: {"DATA": "354 go ahead", "QUIT": "221 bye"}.get(verb, "250 ok")
    silent_on: str | None = None
    dot: Callable[[int], str] = lambda n: "250 2.0.0 queued"  # the reply to the n-th message's final dot
    hang_up_after_dot: int | None = None  # close the connection right after that message's dot reply
    lines: list[bytes] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        held: list[bytes] = []
        try:
            while line := await reader.readline():
                self.lines.append(line)
                verb = line[:4].decode().upper().strip()
                if verb == "EHLO":
                    offer = b"250-PIPELINING\r\n" if self.pipelining else b""
                    writer.write(b"250-scripted\r\n" + offer + b"250 8BITMIME\r\n")
                    continue
                if verb == self.silent_on:
                    await asyncio.sleep(30)
                answer = (self.reply(verb) + "\r\n").encode()
                if verb in GROUP and self.pipelining and not self.split:
                    held.append(answer)  # the group's replies go together, when it ends (DATA)
                    if verb == "DATA":
                        writer.write(b"".join(held))
                        held.clear()
                else:
                    writer.write(answer)
                    await writer.drain()
                    if self.split:
                        await asyncio.sleep(0.02)  # the next reply in a segment of its own
                if verb == "DATA" and answer.startswith(b"354"):
                    self.contents.append(await reader.readuntil(b"\r\n.\r\n"))
                    n = len(self.contents) - 1
                    writer.write((self.dot(n) + "\r\n").encode())
                    if n == self.hang_up_after_dot:
                        await writer.drain()
                        break
                if verb == "QUIT":
                    break
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., asyncio.Future[ScriptedServer]]]:
    servers: list[asyncio.Server] = []

    async def start(**options: object) -> ScriptedServer:
        script = ScriptedServer(**options)  # type: ignore[arg-type]
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        script.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return script

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def plain(port: int) -> SmtpServer:
    return SmtpServer(host="127.0.0.1", port=port, mode="none", username=None, password=None)


MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"


@pytest.mark.parametrize("split", [False, True], ids=["one-segment", "segment-per-reply"])
async def test_a_group_of_replies_is_read_in_order_however_it_arrives(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet, split: bool
) -> None:
    server = await scripted(split=split)
    conn = await connect(plain(server.port), make_net(server.port))
    assert isinstance(conn.protocol, PipeliningProtocol)
    for n in range(3):  # reused: nothing of one group is left to pair with the next
        reply = await transmit(conn, sender="ada@example.test", recipients=[f"r{n}@example.test"], message=MESSAGE)
        assert reply.code == 250
    conn.close()
    assert len(server.contents) == 3
    # MAIL, RCPT and DATA went out in one write: the server read them before answering any.
    assert [line.split(b":")[0] for line in server.lines[1:4]] == [b"MAIL FROM", b"RCPT TO", b"DATA\r\n"]


async def test_without_the_offer_commands_go_one_at_a_time(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet
) -> None:
    server = await scripted(pipelining=False)
    conn = await connect(plain(server.port), make_net(server.port))
    writes = recording(conn)
    reply = await transmit(conn, sender="ada@example.test", recipients=["bob@example.test"], message=MESSAGE)
    conn.close()
    assert reply.code == 250 and len(server.contents) == 1
    assert [w.split(b":")[0].rstrip(b"\r\n") for w in writes[:3]] == [b"MAIL FROM", b"RCPT TO", b"DATA"]


@pytest.mark.parametrize("split", [False, True], ids=["one-segment", "segment-per-reply"])
async def test_a_refused_recipient_is_the_rcpt_stage_and_data_is_refused_too(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet, split: bool
) -> None:
    replies = {"RCPT": "550 5.1.1 no such user", "DATA": "554 5.5.1 no valid recipients"}
    server = await scripted(split=split, reply=lambda verb: replies.get(verb, "250 ok"))
    conn = await connect(plain(server.port), make_net(server.port))
    with pytest.raises(SmtpError) as info:
        await transmit(conn, sender="ada@example.test", recipients=["nobody@example.test"], message=MESSAGE)
    assert (info.value.code, info.value.stage, info.value.reply and info.value.reply.code) == (
        "smtp.recipient_rejected",
        "rcpt",
        550,
    )
    assert conn.is_connected  # a refusal with a reply: the connection is in a known state (RSET next)
    conn.close()
    assert server.contents == []


async def test_data_accepted_after_a_refused_recipient_closes_the_connection(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet
) -> None:
    replies = {"RCPT": "550 5.1.1 no such user", "DATA": "354 go ahead anyway"}
    server = await scripted(reply=lambda verb: replies.get(verb, "250 ok"))
    conn = await connect(plain(server.port), make_net(server.port))
    with pytest.raises(SmtpError) as info:
        await transmit(conn, sender="ada@example.test", recipients=["nobody@example.test"], message=MESSAGE)
    assert info.value.stage == "rcpt"
    assert not conn.is_connected  # the server waits for content: never reused, never sent the message


async def test_a_refused_sender_is_the_mail_stage(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet
) -> None:
    replies = {"MAIL": "553 5.1.8 sender rejected", "RCPT": "503 need MAIL", "DATA": "503 need RCPT"}
    server = await scripted(reply=lambda verb: replies.get(verb, "250 ok"))
    conn = await connect(plain(server.port), make_net(server.port))
    with pytest.raises(SmtpError) as info:
        await transmit(conn, sender="ada@example.test", recipients=["bob@example.test"], message=MESSAGE)
    conn.close()
    assert (info.value.code, info.value.stage) == ("smtp.sender_rejected", "mail")


async def test_no_reply_to_rcpt_is_a_timeout_of_the_rcpt_stage(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet
) -> None:
    server = await scripted(split=True, silent_on="RCPT")
    conn = await connect(plain(server.port), make_net(server.port, command_timeout=0.3))
    with pytest.raises(SmtpError) as info:
        await transmit(conn, sender="ada@example.test", recipients=["bob@example.test"], message=MESSAGE)
    assert (info.value.code, info.value.stage) == ("smtp.timeout", "rcpt")
    assert not conn.is_connected  # a reply given up on must never pair with a later command


@pytest.mark.parametrize(
    "address",
    [
        "bob@example.test>\r\nRCPT TO:<eve@example.test",
        "bob@example.test\nDATA",
        "bob <x>@example.test",
        "b\x00b@x.test",
    ],
)
async def test_an_address_that_could_break_the_command_line_is_refused_before_anything_is_sent(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet, address: str
) -> None:
    server = await scripted()
    conn = await connect(plain(server.port), make_net(server.port))
    with pytest.raises(SmtpError) as info:
        await transmit(conn, sender="ada@example.test", recipients=[address], message=MESSAGE)
    conn.close()
    assert (info.value.code, info.value.stage) == ("smtp.recipient_rejected", "rcpt")
    assert not any(line.startswith((b"MAIL", b"RCPT", b"DATA")) for line in server.lines)


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: x\r\n\r\nplain CRLF\r\n",
        b"Subject: x\r\n\r\nno final line break",
        b"Subject: x\n\nbare LF\n.leading dot\n",
        b".first line is a dot\r\nand more\r\n",
        b"Subject: x\r\n\r\nmixed\rCR\r\n..two dots\r\n.\r\n",
    ],
)
def test_the_data_payload_is_crlf_dot_stuffed_and_terminated(message: bytes) -> None:
    payload = _dot_stuffed(message)
    assert payload.endswith(b"\r\n.\r\n")
    body = payload[: -len(b".\r\n")]
    lines = body.split(b"\r\n")[:-1]
    assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)
    # Unstuffing gives the message back with CRLF line endings.
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines) + b"\r\n"
    expected = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert unstuffed == expected


def recording(conn: SmtpConnection) -> list[bytes]:
    """What goes on the wire, write by write (then sent as ever)."""
    protocol = conn.protocol
    assert protocol is not None
    writes: list[bytes] = []
    write = protocol.write

    def recording_write(data: bytes) -> None:
        writes.append(data)
        write(data)

    protocol.write = recording_write  # type: ignore[method-assign]
    return writes


def chain(n: int) -> list[Outgoing]:
    return [
        Outgoing("ada@example.test", [f"r{i}@example.test"], b"Subject: %d\r\n\r\nHello.\r\n" % i) for i in range(n)
    ]


async def send_chained(conn: SmtpConnection, messages: list[Outgoing]) -> list[int | str]:
    """Each message with the next one's envelope riding on its final dot; the reply code, or the error."""
    results: list[int | str] = []
    for i, m in enumerate(messages):
        then = messages[i + 1] if i + 1 < len(messages) else None
        try:
            reply = await transmit(conn, sender=m.sender, recipients=m.recipients, message=m.message, then=then)
        except SmtpError as exc:
            results.append(f"{exc.stage} {exc.reply.code if exc.reply else exc.code}")
        else:
            results.append(reply.code)
    return results


@pytest.mark.parametrize("split", [False, True], ids=["one-segment", "segment-per-reply"])
async def test_the_next_envelope_rides_with_the_final_dot(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet, split: bool
) -> None:
    server = await scripted(split=split)
    conn = await connect(plain(server.port), make_net(server.port))
    writes = recording(conn)
    assert await send_chained(conn, chain(4)) == [250, 250, 250, 250]
    assert conn.chained is None and conn.is_connected
    conn.close()
    assert [c.split(b"\r\n")[0] for c in server.contents] == [b"Subject: %d" % i for i in range(4)]
    # One write for the first envelope, then one per message: its content, its dot, the next envelope.
    assert len(writes) == 5
    assert writes[1].startswith(b"Subject: 0") and writes[1].endswith(
        b"\r\n.\r\nMAIL FROM:<ada@example.test>\r\nRCPT TO:<r1@example.test>\r\nDATA\r\n"
    )
    assert writes[4].endswith(b"\r\n.\r\n")  # the last message announces nothing


async def test_a_refused_dot_fails_that_message_only_and_needs_no_reset(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet
) -> None:
    server = await scripted(dot=lambda n: "554 5.7.1 content refused" if n == 1 else "250 2.0.0 queued")
    conn = await connect(plain(server.port), make_net(server.port))
    assert await send_chained(conn, chain(3)) == [250, "dot 554", 250]
    conn.close()
    assert len(server.contents) == 3
    assert not any(line.upper().startswith(b"RSET") for line in server.lines)


@pytest.mark.parametrize("hang_up", ["close", "421"])
async def test_a_connection_lost_after_a_dot_keeps_that_reply_and_leaves_the_next_message_unsent(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet, hang_up: str
) -> None:
    dot = (lambda n: "421 4.3.2 shutting down") if hang_up == "421" else (lambda n: "250 2.0.0 queued")
    server = await scripted(hang_up_after_dot=0, dot=dot)
    conn = await connect(plain(server.port), make_net(server.port))
    first, second = chain(2)
    if hang_up == "close":
        # The dot's reply came: the message is sent, whatever happened to the envelope after it.
        reply = await transmit(
            conn, sender=first.sender, recipients=first.recipients, message=first.message, then=second
        )
        assert reply.code == 250
    else:
        with pytest.raises(SmtpError) as info:
            await transmit(conn, sender=first.sender, recipients=first.recipients, message=first.message, then=second)
        assert (info.value.stage, info.value.reply and info.value.reply.code) == ("dot", 421)
    assert conn.chained is None and not conn.is_connected  # the next message goes on another connection
    assert len(server.contents) == 1


async def test_a_connection_is_only_good_for_the_announced_message(
    scripted: Callable[..., asyncio.Future[ScriptedServer]], make_net: MakeNet
) -> None:
    server = await scripted()
    conn = await connect(plain(server.port), make_net(server.port))
    first, second, other = chain(3)
    await transmit(conn, sender=first.sender, recipients=first.recipients, message=first.message, then=second)
    assert conn.chained is not None  # the server waits for the second message's content
    with pytest.raises(RuntimeError):
        await transmit(conn, sender=other.sender, recipients=other.recipients, message=other.message)
    assert not conn.is_connected
    assert len(server.contents) == 1
