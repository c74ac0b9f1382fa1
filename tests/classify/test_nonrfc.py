"""Bounces without a delivery-status part, per MTA style, and mail that must not be taken for one."""

from __future__ import annotations

from nimbus_api.classify import classify
from tests.classify.mail import ORIGINAL_ID, RETURNED_HEADERS, message, plain_bounce

EXIM = (
    "This message was created automatically by mail delivery software.\n\n"
    "A message that you sent could not be delivered to one or more of its\n"
    "recipients. This is a permanent error. The following address(es) failed:\n\n"
    "  gone@rcpt.example.net\n"
    "    host mx.rcpt.example.net [192.0.2.2]\n"
    "    SMTP error from remote mail server after RCPT TO:<gone@rcpt.example.net>:\n"
    "    550 5.1.1 <gone@rcpt.example.net>: Recipient address rejected: User unknown\n"
    "  full@rcpt.example.net\n"
    "    host mx.rcpt.example.net [192.0.2.2]\n"
    "    SMTP error from remote mail server after RCPT TO:<full@rcpt.example.net>:\n"
    "    552 5.2.2 <full@rcpt.example.net>: Mailbox full\n\n"
    "------ This is a copy of the message, including all the headers. ------\n\n" + RETURNED_HEADERS + "\nHello\n"
)


def test_exim_two_recipients_with_x_failed_recipients() -> None:
    raw = plain_bounce(EXIM, extra=[("X-Failed-Recipients", "gone@rcpt.example.net, full@rcpt.example.net")])
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert verdict.original_message_id == ORIGINAL_ID
    assert [(r.address, r.status, r.reply_code, r.reason, r.hard) for r in verdict.recipients] == [
        ("gone@rcpt.example.net", "5.1.1", "550", "userunknown", True),
        ("full@rcpt.example.net", "5.2.2", "552", "mailboxfull", False),
    ]
    for expected in (
        "pattern:x-failed-recipients",
        "pattern:sender-mailer-daemon",
        "pattern:body-exim-failed",
        "pattern:cut-exim-copy",
        "pattern:action=failed",
    ):
        assert expected in verdict.reasons


def test_exim_without_the_header_reads_the_text() -> None:
    verdict = classify(plain_bounce(EXIM))
    assert [r.address for r in verdict.recipients] == ["gone@rcpt.example.net", "full@rcpt.example.net"]
    assert "pattern:recipient-bare-address-line" in verdict.reasons


def test_qmail() -> None:
    body = (
        "Hi. This is the qmail-send program at mx.send.example.com.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<gone@rcpt.example.net>:\n192.0.2.2 does not like recipient.\n"
        "Remote host said: 550 5.1.1 <gone@rcpt.example.net>: Recipient address rejected: User unknown\n"
        "Giving up on 192.0.2.2.\n\n--- Below this line is a copy of the message.\n\n" + RETURNED_HEADERS
    )
    verdict = classify(plain_bounce(body, sender="MAILER-DAEMON@mx.send.example.com", subject="failure notice"))
    (r,) = verdict.recipients
    assert (verdict.kind, r.address, r.status, r.hard) == ("bounce", "gone@rcpt.example.net", "5.1.1", True)
    assert verdict.original_message_id == ORIGINAL_ID
    assert "pattern:body-qmail-failed" in verdict.reasons


def test_gmail_failed_permanently() -> None:
    body = (
        "Delivery to the following recipient failed permanently:\n\n     gone@rcpt.example.net\n\n"
        "Technical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected by the"
        " server for the recipient domain rcpt.example.net.\nThe error that the other server returned was:\n"
        "550 5.1.1 <gone@rcpt.example.net>... User Unknown\n\n----- Original message -----\n\n" + RETURNED_HEADERS
    )
    raw = plain_bounce(
        body,
        sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        subject="Delivery Status Notification (Failure)",
        extra=[("X-Failed-Recipients", "gone@rcpt.example.net")],
    )
    (r,) = classify(raw).recipients
    assert (r.status, r.reason, r.hard) == ("5.1.1", "userunknown", True)


def test_yahoo_policy_refusal_is_not_hard() -> None:
    body = (
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        "<a@rcpt.example.net>:\nRemote host said: 554 5.7.1 Service unavailable; Client host [192.0.2.1]"
        " blocked using zen.spamhaus.org [RCPT_TO]\n\n--- Below this line is a copy of the message.\n"
    )
    verdict = classify(plain_bounce(body, sender="MAILER-DAEMON@yahoo.example.com", subject="Failure Notice"))
    (r,) = verdict.recipients
    assert (r.permanent, r.hard, r.reason) == (True, False, "blocked")


def test_exchange_2003_style() -> None:
    body = (
        "Your message\n\n  To:      someone@rcpt.example.net\n  Subject: Hello\n\n"
        "did not reach the following recipient(s):\n\n"
        "gone@rcpt.example.net on Thu, 3 Dec 2026 10:00:00 +0000\n"
        "    The recipient name is not recognized\n"
        "    MSEXCH:IMS:EXAMPLE:RCPT:EXCHANGE 0 (000C05A6) Unknown Recipient\n"
    )
    verdict = classify(
        plain_bounce(body, sender="System Administrator <postmaster@rcpt.example.net>", subject="Undeliverable: Hello")
    )
    (r,) = verdict.recipients
    assert (r.address, r.reason, r.hard) == ("gone@rcpt.example.net", "userunknown", True)


def test_old_sendmail_transcript() -> None:
    body = (
        "The original message was received at Thu, 3 Dec 2026 10:00:00 +0000\nfrom localhost\n\n"
        "   ----- The following addresses had permanent fatal errors -----\n<gone@rcpt.example.net>\n\n"
        "   ----- Transcript of session follows -----\n... while talking to mx.rcpt.example.net.:\n"
        ">>> RCPT To:<gone@rcpt.example.net>\n<<< 550 5.1.1 <gone@rcpt.example.net>... User unknown\n"
        "550 5.1.1 <gone@rcpt.example.net>... User unknown\n"
    )
    raw = plain_bounce(
        body,
        sender="Mail Delivery Subsystem <MAILER-DAEMON@mx.send.example.com>",
        subject="Returned mail: see transcript for details",
    )
    (r,) = classify(raw).recipients
    assert (r.address, r.status, r.reason) == ("gone@rcpt.example.net", "5.1.1", "userunknown")


def test_delay_warning_is_a_delivery_report() -> None:
    body = (
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on mx.send.example.com.\n\n"
        "The address to which the message has not yet been delivered is:\n\n"
        "  slow@rcpt.example.net\n    Delay reason: SMTP error from remote mail server after RCPT TO:\n"
        "    451 4.3.0 Temporary local problem\n\n"
        "No action is required on your part. Delivery attempts will continue for some time.\n"
    )
    verdict = classify(plain_bounce(body, subject="Warning: message 1abc-000 delayed 24 hours"))
    assert verdict.kind == "delivery_report"
    (r,) = verdict.recipients
    assert (r.action, r.status, r.permanent, r.hard) == ("delayed", "4.3.0", False, False)
    assert "pattern:delayed" in verdict.reasons


def test_crlf_report_and_recipient_from_returned_to() -> None:
    # a report naming nobody: the failed recipient is the returned message's To
    body = "Delivery has failed.\n\nThis is a permanent error.\n\nOriginal message headers:\n\n" + RETURNED_HEADERS
    raw = plain_bounce(body, sender="postmaster@rcpt.example.net", subject="Undeliverable: Hello", crlf=True)
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert verdict.recipients[0].address == "someone@rcpt.example.net"
    assert "pattern:recipient-returned-to" in verdict.reasons


def test_a_person_writing_about_a_failed_delivery_is_not_a_bounce() -> None:
    raw = message(
        [("From", "Alice <alice@example.com>"), ("To", "bob@example.org"), ("Subject", "Re: your invoice")],
        "Hi Bob, my mail to carol@example.net could not be delivered, the delivery failed twice.\n",
    )
    assert classify(raw).kind == "reply"


def test_auto_reply_with_empty_return_path_is_not_a_bounce() -> None:
    raw = message(
        [
            ("Return-Path", "<>"),
            ("From", "Bob <bob@example.org>"),
            ("Subject", "Out of office"),
            ("Auto-Submitted", "auto-replied"),
        ],
        "I am away until Monday and will read your message when I am back.\n",
    )
    assert classify(raw).kind not in {"bounce", "delivery_report", "complaint"}


def test_mailer_daemon_newsletter_without_bounce_wording_is_not_a_bounce() -> None:
    raw = message(
        [("From", "MAILER-DAEMON@example.org"), ("Subject", "Weekly digest")],
        "Here are this week's top posts.\n",
    )
    assert classify(raw).kind == "other"


def test_a_person_forwarding_a_bounce_is_not_a_bounce() -> None:
    raw = message(
        [("From", "Alice <alice@example.com>"), ("Subject", "Fwd: Undelivered Mail Returned to Sender")],
        "Bob, see below, what does this mean?\n\n" + EXIM,
    )
    assert classify(raw).kind not in {"bounce", "delivery_report"}
