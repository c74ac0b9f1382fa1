"""One SMTP mail transaction on a connected client (``smtp.connection``): MAIL, RCPT, DATA, the content and
its final dot, pipelined when the server offers it (RFC 2920).

Addresses reach the wire as ``smtp.addresses`` writes them; the reply to each command is classified at
its own stage, so a refusal of a recipient (``rcpt``) is told apart from a refusal of the content
(``dot``). On ``SmtpError`` the connection's state is undefined: the caller closes it (the pool does).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aiosmtplib import SMTPException, SMTPResponse, SMTPServerDisconnected, SMTPTimeoutError

from nimbus_api.kit.addresses import UnencodableAddress, wire_address
from nimbus_api.smtp.classify import HINTS
from nimbus_api.smtp.connection import SmtpConnection, _promptly_cancellable, reset
from nimbus_api.smtp.errors import ServerReply, SmtpError, Stage, parse_reply
from nimbus_api.smtp.pipelining import PipeliningProtocol

_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")


def _dot_stuffed(message: bytes) -> bytes:
    """The DATA payload: CRLF line endings, leading dots doubled (RFC 5321 4.5.2), final ``.`` line."""
    if message.count(b"\n") == message.count(b"\r\n") == message.count(b"\r") and not (
        message.startswith(b".") or b"\n." in message
    ):  # already CRLF throughout and no line starts with a dot (what ``sending.mime`` writes)
        return message + (b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n")
    body = _LINE_ENDINGS.sub(b"\r\n", message)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _DOT_AT_LINE_START.sub(b"..", body) + b".\r\n"


async def _send_body(conn: SmtpConnection, payload: bytes, timeout: float) -> SMTPResponse:
    protocol = conn.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    protocol.write(payload)
    try:
        return await protocol.read_response(timeout=timeout)
    except (SMTPServerDisconnected, SMTPTimeoutError):
        conn.close()
        raise


@dataclass(frozen=True)
class Outgoing:
    """One message for ``transmit``: its envelope and its content."""

    sender: str
    recipients: Sequence[str]
    message: bytes


@dataclass(frozen=True)
class _Envelope:
    """A message's MAIL, RCPT and DATA lines, as written, and the stage of each; ``of`` is the message
    they were built for (sender, recipients, content)."""

    lines: tuple[bytes, ...]
    stages: tuple[Stage, ...]
    of: tuple[str, tuple[str, ...], bytes]


@dataclass(frozen=True)
class Chained:
    """An envelope written after the previous message's final dot, with the replies it got."""

    envelope: _Envelope
    replies: list[SMTPResponse]


async def transmit(
    conn: SmtpConnection,
    *,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    then: Outgoing | None = None,
) -> ServerReply:
    """Send one message on a connected client; returns the reply to the final dot.

    Every recipient must be accepted. On ``SmtpError`` the connection's state is undefined: close it.
    DATA is driven here rather than with ``SMTP.data()`` so a refusal of the DATA command (stage
    ``data``) is told apart from a refusal of the content (stage ``dot``).

    ``then``: the message the caller sends next on this connection, at once (no pacing wait between).
    When the server offers PIPELINING, its MAIL, RCPT and DATA go in the same write as this message's
    final dot (RFC 2920 lets commands follow the end of data in a group), and their replies are read
    with the dot's: a message then costs one write and one round trip instead of two. The next
    ``transmit`` on the connection must be for that message (it finds its envelope answered); a
    connection left with such an envelope must be closed, never reused (``chained``). Whatever
    happens after the dot's reply (the connection lost, a timeout), this message's outcome is that
    reply; the next message then goes on another connection, never having reached DATA.

    The whole transaction runs in one task (``_promptly_cancellable``): a cancellation closes the
    connection at once, as with ``step``, for one task per message rather than one per command.
    """
    chained, conn.chained = conn.chained, None
    if chained is None:
        envelope = _envelope(conn, sender, recipients, message)
    elif chained.envelope.of == (sender, tuple(recipients), message):
        envelope = chained.envelope  # built, written and answered when this message was announced (``then``)
    else:  # a caller bug: the server waits for another message's content
        conn.close()
        raise RuntimeError("transmit was called for another message than the one announced with `then`")
    following: _Envelope | None = None
    if then is not None and _pipelining(conn) is not None:
        with contextlib.suppress(SmtpError):  # an envelope this server refuses fails when it is sent alone
            following = _envelope(conn, then.sender, then.recipients, then.message)
    answered = chained.replies if chained is not None else None
    return await _promptly_cancellable(_transaction(conn, envelope, message, following, answered), on_cancel=conn.close)


def _pipelining(conn: SmtpConnection) -> PipeliningProtocol | None:
    """The connection's protocol when commands may be grouped (RFC 2920: the server offered PIPELINING)."""
    protocol = conn.protocol
    return protocol if isinstance(protocol, PipeliningProtocol) and conn.supports_extension("pipelining") else None


def _envelope(conn: SmtpConnection, sender: str, recipients: Sequence[str], message: bytes) -> _Envelope:
    """The MAIL, RCPT and DATA lines of one message. Domains go as IDNA A-labels (``kit.addresses``), so
    only a non-ASCII local part needs SMTPUTF8 (RFC 6531); a server without it fails this message with
    ``smtp.smtputf8_unsupported`` at the address's stage, before anything is written."""
    if not recipients:
        raise ValueError("transmit needs at least one recipient")
    mail_options: list[str] = []
    encoding = "ascii"
    try:
        wire_sender = wire_address(sender)
        wire_recipients = [wire_address(r) for r in recipients]
    except UnencodableAddress as exc:
        raise SmtpError(
            "smtp.recipient_rejected", str(exc), "rcpt", None, HINTS.get("smtp.recipient_rejected")
        ) from None
    if not (wire_sender.isascii() and all(r.isascii() for r in wire_recipients)):
        if not conn.supports_extension("smtputf8"):
            stage: Stage = "mail" if not wire_sender.isascii() else "rcpt"
            raise conn.fail(
                "smtp.smtputf8_unsupported",
                f"the server does not offer SMTPUTF8, which the {'sender' if stage == 'mail' else 'recipient'} "
                "address needs (its part before the @ is not ASCII)",
                stage,
            )
        mail_options.append("SMTPUTF8")
        encoding = "utf-8"
    if not message.isascii() and conn.supports_extension("8bitmime"):
        mail_options.append("BODY=8BITMIME")
    mail = (
        b"MAIL FROM:" + _path(wire_sender, encoding, "mail") + b"".join(b" " + o.encode("ascii") for o in mail_options)
    )
    rcpts = [b"RCPT TO:" + _path(r, encoding, "rcpt") for r in wire_recipients]
    rcpt: Stage = "rcpt"
    return _Envelope(
        (mail + b"\r\n", *(r + b"\r\n" for r in rcpts), b"DATA\r\n"),
        ("mail", *([rcpt] * len(rcpts)), "data"),
        (sender, tuple(recipients), message),
    )


async def _transaction(
    conn: SmtpConnection,
    envelope: _Envelope,
    message: bytes,
    following: _Envelope | None,
    answered: list[SMTPResponse] | None,
) -> ServerReply:
    """``answered``: the envelope's replies when it went with the previous final dot (``then``)."""
    timeout = conn.net.command_timeout
    pipelined = _pipelining(conn)
    if answered is not None:
        _check_envelope(conn, envelope, answered)
    elif pipelined is not None:
        # RFC 2920: MAIL, every RCPT and DATA in one write, their replies read in order.
        _check_envelope(
            conn, envelope, await _pipeline(conn, pipelined, list(envelope.lines), list(envelope.stages), timeout)
        )
    else:
        for line, stage in zip(envelope.lines, envelope.stages, strict=True):
            await _expect(conn, stage, line[:-2], _ACCEPTED[stage], timeout)
    payload = _dot_stuffed(message)
    if following is not None and pipelined is not None:
        final = await conn.inner_step("dot", _send_body_then(conn, pipelined, payload, following, timeout))
    else:
        final = await conn.inner_step("dot", _send_body(conn, payload, timeout))
    if final.code != 250:
        raise conn.reply_error("dot", final.code, final.message)
    return parse_reply(final.code, final.message, conn.secret_forms)


_ACCEPTED: dict[Stage, tuple[int, ...]] = {"mail": (250,), "rcpt": (250, 251), "data": (354,)}


def _check_envelope(conn: SmtpConnection, envelope: _Envelope, replies: list[SMTPResponse]) -> None:
    for stage, reply in zip(envelope.stages, replies, strict=True):
        if reply.code not in _ACCEPTED[stage]:
            if replies[-1].code == 354:
                conn.close()  # the server waits for content after a refusal: no known state to reuse
            raise conn.reply_error(stage, reply.code, reply.message)


async def _send_body_then(
    conn: SmtpConnection, protocol: PipeliningProtocol, payload: bytes, following: _Envelope, timeout: float
) -> SMTPResponse:
    """The content and final dot, then the next message's envelope, in one write: returns the dot's
    reply and leaves the envelope's replies on the connection (``conn.chained``) for the next message.
    If they do not all come (the connection lost, a timeout, a 421), the connection is closed: the next
    message goes on another one."""
    replies, error = await protocol.exchange(payload + b"".join(following.lines), 1 + len(following.lines), timeout)
    if not replies:
        conn.close()
        raise error if error is not None else SMTPServerDisconnected("Connection lost")
    if error is None and not any(reply.code == 421 for reply in replies):
        conn.chained = Chained(following, replies[1:])
    else:
        conn.close()
    return replies[0]


async def _pipeline(
    conn: SmtpConnection, protocol: PipeliningProtocol, commands: list[bytes], stages: list[Stage], timeout: float
) -> list[SMTPResponse]:
    """The replies to a group of commands; a lost connection or a timeout is the error of the command
    whose reply was awaited, and closes the connection (a reply given up on could pair with a later
    command). A 421 closes it too, as aiosmtplib does."""
    try:
        replies = await protocol.pipeline(commands, timeout)
    except (SMTPException, OSError, TimeoutError) as exc:
        conn.close()
        error = conn.translate(exc, stages[min(protocol.replies_read, len(stages) - 1)])
        if error is None:
            raise
    else:
        if any(reply.code == 421 for reply in replies):
            conn.close()
        return replies
    raise error  # outside the except block: no __context__ carrying the raw reply


async def _expect(
    conn: SmtpConnection, stage: Stage, command: bytes, accepted: tuple[int, ...], timeout: float
) -> None:
    reply = await conn.inner_step(stage, conn.execute_command(command, timeout=timeout))
    if reply.code not in accepted:
        raise conn.reply_error(stage, reply.code, reply.message)


_PLAIN_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f-\x9f<>()\[\]\\,;:\"@]+@[^\s\x00-\x1f\x7f-\x9f<>()\[\]\\,;:\"@]+")


def _path(address: str, encoding: str, stage: Stage) -> bytes:
    """``<address>`` for MAIL FROM / RCPT TO. Addresses we send to were validated when they were saved
    (dot-atom local parts); anything else, or anything that could end the command line, is refused here
    rather than quoted, so no byte of an address can become a command of its own."""
    if not _PLAIN_ADDRESS.fullmatch(address):
        code = "smtp.sender_rejected" if stage == "mail" else "smtp.recipient_rejected"
        raise SmtpError(code, "the address cannot be written in an SMTP command", stage, None, HINTS.get(code))
    return b"<" + address.encode(encoding) + b">"


async def probe_recipient(conn: SmtpConnection, *, sender: str, recipient: str) -> SmtpError | None:
    """Would the server take mail from ``sender`` for ``recipient``? MAIL FROM and RCPT TO, then RSET:
    nothing is sent. Returns the refusal of the recipient, or None when it was accepted.

    Raises ``SmtpError`` when the question could not be asked (MAIL refused, the connection lost, a
    timeout, no reply); the connection is then closed. After an answer it is left reset (or closed, when
    RSET failed). A cancellation closes it at once."""
    envelope = _envelope(conn, sender, [recipient], b"")
    timeout = conn.net.command_timeout

    async def ask() -> SmtpError | None:
        await _expect(conn, "mail", envelope.lines[0][:-2], _ACCEPTED["mail"], timeout)
        try:
            await _expect(conn, "rcpt", envelope.lines[1][:-2], _ACCEPTED["rcpt"], timeout)
        except SmtpError as exc:
            if exc.reply is None:
                raise
            return exc
        return None

    try:
        answer = await _promptly_cancellable(ask(), on_cancel=conn.close)
    except SmtpError:
        conn.close()
        raise
    await reset(conn, timeout=timeout)
    return answer
