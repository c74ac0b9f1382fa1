"""Postfix's own DSNs, laid out byte for byte as Postfix writes them (bounce(8) templates)."""

from __future__ import annotations

import pytest

from nimbus_api.classify import classify

TEMPLATE = """Received: by mx.send.example.com (Postfix)
\tid 4Q2; Thu,  3 Dec 2026 10:00:01 +0000 (UTC)
Date: Thu,  3 Dec 2026 10:00:01 +0000 (UTC)
From: MAILER-DAEMON@mx.send.example.com (Mail Delivery System)
Subject: {subject}
To: bounces+abc@send.example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4Q2.1700000000/mx.send.example.com"
Content-Transfer-Encoding: 8bit
Message-Id: <20261203100001.4Q2@mx.send.example.com>

This is a MIME-encapsulated message.

--4Q2.1700000000/mx.send.example.com
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.send.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

{text}

--4Q2.1700000000/mx.send.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.send.example.com
X-Postfix-Queue-ID: 4Q2
X-Postfix-Sender: rfc822; bounces+abc@send.example.com
Arrival-Date: Thu,  3 Dec 2026 10:00:00 +0000 (UTC)

{fields}

--4Q2.1700000000/mx.send.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <bounces+abc@send.example.com>
From: Sender <sender@send.example.com>
To: someone@rcpt.example.net
Subject: Hello
Message-ID: <orig-1@send.example.com>

--4Q2.1700000000/mx.send.example.com--
"""

FAILED = "Undelivered Mail Returned to Sender"
CASES = {
    "local-unknown-user": (
        FAILED,
        '<neko@rcpt.example.net>: unknown user: "neko"',
        "Final-Recipient: rfc822; neko@rcpt.example.net\nOriginal-Recipient: rfc822;neko@rcpt.example.net\n"
        'Action: failed\nStatus: 5.1.1\nDiagnostic-Code: X-Postfix; unknown user: "neko"',
        ("bounce", "failed", "5.1.1", "userunknown", True),
    ),
    "virtual-unknown-user": (
        FAILED,
        "<a@rcpt.example.net>: host mx.rcpt.example.net[192.0.2.2] said: 550 5.1.1\n"
        "    <a@rcpt.example.net>: Recipient address rejected: User unknown in virtual\n"
        "    mailbox table (in reply to RCPT TO command)",
        "Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n"
        "Remote-MTA: dns; mx.rcpt.example.net\nDiagnostic-Code: smtp; 550 5.1.1 <a@rcpt.example.net>: Recipient\n"
        "    address rejected: User unknown in virtual mailbox table",
        ("bounce", "failed", "5.1.1", "userunknown", True),
    ),
    "host-not-found": (
        FAILED,
        "<a@nowhere.example>: Host or domain name not found. Name service error for\n"
        "    name=nowhere.example type=AAAA: Host not found",
        "Final-Recipient: rfc822; a@nowhere.example\nAction: failed\nStatus: 5.4.4\n"
        "Diagnostic-Code: X-Postfix; Host or domain name not found. Name service error\n"
        "    for name=nowhere.example type=AAAA: Host not found",
        ("bounce", "failed", "5.4.4", "hostunknown", True),
    ),
    "mailbox-full": (
        FAILED,
        "<a@rcpt.example.net>: host x said: 552 5.2.2 <a@rcpt.example.net>: Recipient\n"
        "    address rejected: Mailbox full (in reply to RCPT TO command)",
        "Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 <a@rcpt.example.net>: Recipient address rejected: Mailbox full",
        ("bounce", "failed", "5.2.2", "mailboxfull", False),
    ),
    "spam-after-data": (
        FAILED,
        "<a@rcpt.example.net>: host mx.rcpt.example.net[192.0.2.2] said: 554 5.7.1 Spam\n"
        "    message rejected (in reply to end of DATA command)",
        "Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.7.1\n"
        "Diagnostic-Code: smtp; 554 5.7.1 Spam message rejected",
        ("bounce", "failed", "5.7.1", "spamdetected", False),
    ),
    "dmarc": (
        FAILED,
        "<a@mail.example>: host in.mail.example[192.0.2.3] said: 550-5.7.26 Unauthenticated\n"
        "    email is not accepted due to domain's DMARC policy. (in reply to end of DATA command)",
        "Final-Recipient: rfc822; a@mail.example\nAction: failed\nStatus: 5.7.26\n"
        "Diagnostic-Code: smtp; 550-5.7.26 Unauthenticated email from send.example.com is not\n"
        "    accepted due to domain's DMARC policy.",
        ("bounce", "failed", "5.7.26", "authfailure", False),
    ),
    "delayed": (
        "Delayed Mail (still being retried)",
        "<a@rcpt.example.net>: connect to mx.rcpt.example.net[192.0.2.2]:25: Connection\n    refused",
        "Final-Recipient: rfc822; a@rcpt.example.net\nAction: delayed\nStatus: 4.4.1\n"
        "Diagnostic-Code: X-Postfix; connect to mx.rcpt.example.net[192.0.2.2]:25:\n    Connection refused\n"
        "Will-Retry-Until: Thu, 10 Dec 2026 10:00:00 +0000 (UTC)",
        ("delivery_report", "delayed", "4.4.1", "networkerror", False),
    ),
    "success": (
        "Successful Mail Delivery Report",
        "<a@rcpt.example.net>: delivery via mx.rcpt.example.net[192.0.2.2]:25: 250 2.0.0 Ok",
        "Final-Recipient: rfc822; a@rcpt.example.net\nAction: relayed\nStatus: 2.0.0\n"
        "Remote-MTA: dns; mx.rcpt.example.net\nDiagnostic-Code: smtp; 250 2.0.0 Ok: queued as 123",
        ("delivery_report", "relayed", "2.0.0", "delivered", False),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_postfix_dsn(case: str) -> None:
    subject, text, fields, (kind, action, status, reason, hard) = CASES[case]
    verdict = classify(TEMPLATE.format(subject=subject, text=text, fields=fields).encode())
    assert verdict.kind == kind
    assert verdict.original_message_id == "orig-1@send.example.com"
    assert verdict.from_address == "mailer-daemon@mx.send.example.com"
    (r,) = verdict.recipients
    assert (r.action, r.status, r.reason, r.hard) == (action, status, reason, hard)
    assert r.permanent == (kind == "bounce")
