"""Small synthetic messages for the classifier tests (never copies of the corpus)."""

from __future__ import annotations

from collections.abc import Sequence

ORIGINAL_ID = "orig-1234@send.example.com"

RETURNED_HEADERS = (
    "From: Sender <sender@send.example.com>\n"
    "To: someone@rcpt.example.net\n"
    "Subject: Hello\n"
    f"Message-ID: <{ORIGINAL_ID}>\n"
    "Date: Thu, 03 Dec 2026 10:00:00 +0000\n"
)


def message(headers: Sequence[tuple[str, str]], body: str, *, crlf: bool = False) -> bytes:
    """A message from header pairs and a body (LF line ends unless ``crlf``)."""
    text = "".join(f"{name}: {value}\n" for name, value in headers) + "\n" + body
    if crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text.encode("utf-8")


def dsn(
    status_fields: str,
    *,
    notification: str = "This is the mail system at host mx.send.example.com.\n\nYour message was not delivered.\n",
    returned: str = RETURNED_HEADERS,
    returned_type: str = "text/rfc822-headers",
    status_type: str = "message/delivery-status",
    report_type: str | None = "delivery-status",
    sender: str = "MAILER-DAEMON@mx.send.example.com (Mail Delivery System)",
    subject: str = "Undelivered Mail Returned to Sender",
    crlf: bool = False,
    boundary: str = "=_bnd_42",
) -> bytes:
    """A ``multipart/report`` DSN with the given per-message and per-recipient status fields."""
    ctype = f'multipart/report; boundary="{boundary}"'
    if report_type:
        ctype += f"; report-type={report_type}"
    body = (
        f"--{boundary}\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
        f"{notification}\n"
        f"--{boundary}\n"
        f"Content-Type: {status_type}\n\n"
        f"{status_fields}\n"
        f"--{boundary}\n"
        f"Content-Type: {returned_type}\n\n"
        f"{returned}\n"
        f"--{boundary}--\n"
    )
    headers = [
        ("From", sender),
        ("To", "sender@send.example.com"),
        ("Subject", subject),
        ("Message-ID", "<dsn-1@mx.send.example.com>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", ctype),
    ]
    return message(headers, body, crlf=crlf)


def plain_bounce(
    body: str,
    *,
    sender: str = "Mail Delivery System <Mailer-Daemon@mx.send.example.com>",
    subject: str = "Mail delivery failed: returning message to sender",
    extra: Sequence[tuple[str, str]] = (),
    crlf: bool = False,
) -> bytes:
    """A bounce without a delivery-status part: text only, the original pasted at the end."""
    headers = [
        ("From", sender),
        ("To", "sender@send.example.com"),
        ("Subject", subject),
        ("Message-ID", "<bounce-1@mx.send.example.com>"),
        *extra,
    ]
    return message(headers, body, crlf=crlf)
