"""The SMTP adapter's front: ``send_test_message`` (the verification: connect, transmit a one-line message
from the account's address to itself, record the reply to the final dot, QUIT), and the adapter's public
names in one place. Connections are made in ``smtp.connection``, transactions run in ``smtp.transaction``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from aiosmtplib import SMTPException

from nimbus_api.kit.net import NetContext
from nimbus_api.smtp.connection import (
    AUTH_MECHANISMS,
    MODES,
    Mode,
    SmtpConnection,
    SmtpServer,
    _promptly_cancellable,
    close_gracefully,
    connect,
    reset,
)
from nimbus_api.smtp.errors import ServerReply
from nimbus_api.smtp.transaction import Outgoing, transmit


@dataclass
class SendResult:
    reply: ServerReply
    duration_ms: int
    tls_version: str | None
    auth_mechanism: str | None
    warnings: list[str] = field(default_factory=list)


async def send_test_message(
    server: SmtpServer, net: NetContext, *, sender: str, recipient: str, message: bytes
) -> SendResult:
    """Prove the account can send: connect, authenticate, send ``message`` to ``recipient``, QUIT.

    Returns the reply to the final dot with what was negotiated; raises ``SmtpError``.
    """
    started = time.monotonic()
    conn = await connect(server, net)
    try:
        reply = await transmit(conn, sender=sender, recipients=[recipient], message=message)
        result = SendResult(
            reply=reply,
            duration_ms=int((time.monotonic() - started) * 1000),
            tls_version=conn.tls_version,
            auth_mechanism=conn.auth_mechanism,
            warnings=list(conn.warnings),
        )
        with contextlib.suppress(SMTPException, OSError, TimeoutError):
            await _promptly_cancellable(conn.quit(timeout=net.command_timeout), on_cancel=conn.close)
        return result
    finally:
        conn.close()


__all__ = [
    "AUTH_MECHANISMS",
    "MODES",
    "Mode",
    "Outgoing",
    "SendResult",
    "SmtpConnection",
    "SmtpServer",
    "close_gracefully",
    "connect",
    "reset",
    "send_test_message",
    "transmit",
]
