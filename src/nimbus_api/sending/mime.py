"""Outgoing messages as correct MIME (stdlib ``email``, ``policy.SMTP``).

Every header value goes through ``email.headerregistry`` (address headers are parsed and re-rendered,
unstructured ones folded and RFC 2047-encoded), and values containing CR or LF are refused before they
get there: contact data can change what a header *says*, never which headers exist.

Headers: ``From`` with the display name, ``To``, ``Reply-To``, ``Date``, ``Message-ID`` on the sending
domain (stored on the message row for reply and bounce matching), ``In-Reply-To``/``References`` for
threaded follow-ups, ``List-Unsubscribe`` with a mailto and an HTTPS one-click URL plus
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058). Body: text, and HTML as an
alternative when the step has one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime


class HeaderInjection(ValueError):
    """A header value carried CR, LF or NUL."""


def _clean(value: str, name: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise HeaderInjection(f"{name} contains a line break")
    return value


def new_message_id(domain: str) -> str:
    """``<random@sending-domain>``: unique, and matchable when replies and bounces quote it."""
    return f"<{secrets.token_hex(16)}@{domain}>"


@dataclass(frozen=True)
class OutgoingMail:
    from_email: str
    from_name: str | None
    to_email: str
    to_name: str | None
    reply_to: str | None
    subject: str
    text: str
    html: str | None
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    unsubscribe_url: str
    unsubscribe_mailto: str


def _address(email: str, name: str | None) -> Address:
    local, _, domain = _clean(email, "address").rpartition("@")
    return Address(display_name=_clean(name or "", "display name"), username=local, domain=domain)


def build(mail: OutgoingMail, *, now: datetime | None = None) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _address(mail.from_email, mail.from_name)
    msg["To"] = _address(mail.to_email, mail.to_name)
    if mail.reply_to:
        msg["Reply-To"] = _address(mail.reply_to, None)
    msg["Subject"] = _clean(mail.subject, "subject")
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = _clean(mail.message_id, "Message-ID")
    if mail.in_reply_to:
        msg["In-Reply-To"] = _clean(mail.in_reply_to, "In-Reply-To")
        msg["References"] = " ".join(_clean(r, "References") for r in mail.references or (mail.in_reply_to,))
    mailto = _clean(mail.unsubscribe_mailto, "unsubscribe mailto")
    msg["List-Unsubscribe"] = f"<{mailto}>, <{_clean(mail.unsubscribe_url, 'unsubscribe url')}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    return msg


def to_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=policy.SMTP)
