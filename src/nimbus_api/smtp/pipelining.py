"""SMTP command pipelining (RFC 2920) on top of aiosmtplib's protocol.

aiosmtplib sends one command and waits for its reply; its protocol keeps at most one parsed reply and
drops data that arrives while no command waits, so it cannot read the replies of commands written
together. ``PipeliningProtocol`` is aiosmtplib's protocol with one addition: inside ``pipeline`` it keeps
every complete reply that arrives, in order, and hands them out one per read. Outside ``pipeline`` it is
exactly aiosmtplib's protocol (unsolicited data between commands is still dropped, STARTTLS still
discards buffered plaintext).

Why: a message costs MAIL, RCPT, DATA and the content, four round trips one after the other; with
PIPELINING (offered by Postfix, Exchange/Office 365, Gmail, SES and most providers) MAIL, RCPT and DATA
go in one write, so a message costs two round trips. On a distant server that halves the time a message
holds its connection; on loopback it cut the client's CPU per message by more than half
(``bench/bench_send.py`` prints both ways). ``exchange`` goes one step further for a sender with no
pacing wait between messages: a message's content and final dot, then the next message's MAIL, RCPT and
DATA, in one write (RFC 2920 lets commands follow the end of data in a group; its own example sends QUIT
after the dot), so a message costs one round trip (``client.transmit(then=)``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from aiosmtplib import SMTPException, SMTPResponse, SMTPResponseException, SMTPServerDisconnected
from aiosmtplib.protocol import MAX_RESPONSE_LENGTH, SMTPProtocol


class PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol that can read the replies of several commands written at once."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        connection_lost_callback: Callable[[SMTPProtocol], None] | None = None,
    ) -> None:
        super().__init__(loop=loop, connection_lost_callback=connection_lost_callback)
        self._pipelining = False
        self._replies: deque[SMTPResponse] = deque()
        self._reply_error: Exception | None = None
        self.replies_read = 0
        """How many replies of the last ``pipeline`` were read: on a failure, the command it was at."""

    def data_received(self, data: bytes) -> None:
        if not self._pipelining:
            super().data_received(data)
            return
        waiter = self._response_waiter
        if waiter is None:
            return
        self._buffer.extend(data)
        try:
            if len(self._buffer) > MAX_RESPONSE_LENGTH:
                del self._buffer[:]
                raise SMTPResponseException(-1, "Response too long")
            while (reply := self._read_response_from_buffer()) is not None:
                self._replies.append(reply)
        except Exception as exc:  # a malformed reply: the next read fails with it
            self._reply_error = exc
        if self._response_pending and not waiter.done():
            if self._replies:
                waiter.set_result(self._replies.popleft())
            elif self._reply_error is not None:
                self._set_response_exception(waiter, self._reply_error)
                self._reply_error = None

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        if self._replies:
            return self._replies.popleft()
        if self._reply_error is not None:
            error, self._reply_error = self._reply_error, None
            raise error
        return await super().read_response(timeout=timeout)

    async def pipeline(self, commands: Sequence[bytes], timeout: float | None) -> list[SMTPResponse]:
        """Write ``commands`` (each a full line ending in CRLF) in one go and return their replies, in
        order; each reply waits at most ``timeout``. Only for commands RFC 2920 lets a client group
        (MAIL, RCPT, and DATA as the last one), and only when the server offered PIPELINING."""
        replies, error = await self.exchange(b"".join(commands), len(commands), timeout)
        if error is not None:
            raise error
        return replies

    async def exchange(
        self, data: bytes, count: int, timeout: float | None
    ) -> tuple[list[SMTPResponse], SMTPException | OSError | TimeoutError | None]:
        """Write ``data`` in one go and read ``count`` replies: the replies read, and the error that
        stopped the reading early (None when all came). The replies that did come are kept even so: after
        a message's final dot and the next message's envelope, the dot's reply stands whatever follows."""
        if self._command_lock is None:
            raise SMTPServerDisconnected("Server not connected")
        async with self._command_lock:
            self._pipelining = True
            self._replies.clear()
            self._reply_error = None
            self.replies_read = 0
            replies: list[SMTPResponse] = []
            try:
                self._response_pending = True
                self.write(data)
                for _ in range(count):
                    replies.append(await self.read_response(timeout=timeout))
                    self.replies_read += 1
            except (SMTPException, OSError, TimeoutError) as exc:
                return replies, exc
            finally:
                self._pipelining = False
                self._replies.clear()  # nothing may outlive the group and pair with a later command
                self._reply_error = None
            return replies, None


__all__ = ["PipeliningProtocol"]
