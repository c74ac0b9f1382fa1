"""RFC 3464 delivery status notifications, strict and sloppy, and Amazon SES notifications."""

from __future__ import annotations

import json

from nimbus_api.classify import classify
from nimbus_api.classify.dsn import parse_status_fields
from tests.classify.mail import ORIGINAL_ID, dsn, message

PER_MESSAGE = "Reporting-MTA: dns; mx.send.example.com\nArrival-Date: Thu, 3 Dec 2026 10:00:00 +0000\n\n"


def test_postfix_user_unknown_is_a_hard_bounce() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; gone@rcpt.example.net\n"
        "Original-Recipient: rfc822;gone@rcpt.example.net\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Remote-MTA: dns; mx.rcpt.example.net\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <gone@rcpt.example.net>: Recipient address\n"
        "    rejected: User unknown in local recipient table\n",
        notification="<gone@rcpt.example.net>: host mx.rcpt.example.net said: 550 5.1.1 User unknown"
        " (in reply to RCPT TO command)\n",
    )
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert verdict.original_message_id == ORIGINAL_ID
    (r,) = verdict.recipients
    assert (r.address, r.action, r.status, r.reply_code) == ("gone@rcpt.example.net", "failed", "5.1.1", "550")
    assert (r.permanent, r.hard, r.reason) == (True, True, "userunknown")
    assert r.remote_mta == "mx.rcpt.example.net"
    assert "Recipient address rejected: User unknown" in r.diagnostic  # folded line joined
    assert verdict.reasons[:2] == ("dsn:report-type=delivery-status", "dsn:delivery-status-part")
    assert "dsn:action=failed" in verdict.reasons
    assert "reason:status-x.1.1" in verdict.reasons


def test_policy_rejection_is_permanent_but_not_hard() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.7.1\n"
        "Diagnostic-Code: smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using"
        " zen.spamhaus.org\n"
    )
    (r,) = classify(raw).recipients
    assert (r.permanent, r.hard, r.reason) == (True, False, "blocked")


def test_delayed_is_a_delivery_report_not_a_bounce() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; slow@rcpt.example.net\nAction: delayed\nStatus: 4.4.1\n"
        "Diagnostic-Code: smtp; 421 4.4.1 Connection timed out\n",
        subject="Delayed Mail (still being retried)",
    )
    verdict = classify(raw)
    assert verdict.kind == "delivery_report"
    (r,) = verdict.recipients
    assert (r.action, r.status, r.permanent, r.hard) == ("delayed", "4.4.1", False, False)
    assert "dsn:action=delayed" in verdict.reasons


def test_delivered_relayed_expanded_are_delivery_reports() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; a@rcpt.example.net\nAction: delivered\nStatus: 2.0.0\n\n"
        "Final-Recipient: rfc822; b@rcpt.example.net\nAction: relayed\nStatus: 2.0.0\n\n"
        "Final-Recipient: rfc822; c@rcpt.example.net\nAction: expanded\nStatus: 2.0.0\n",
        subject="Successful Mail Delivery Report",
    )
    verdict = classify(raw)
    assert verdict.kind == "delivery_report"
    assert [(r.address, r.action, r.reason) for r in verdict.recipients] == [
        ("a@rcpt.example.net", "delivered", "delivered"),
        ("b@rcpt.example.net", "relayed", "delivered"),
        ("c@rcpt.example.net", "expanded", "delivered"),
    ]


def test_one_failed_recipient_among_delayed_makes_a_bounce_in_dsn_order() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; late@rcpt.example.net\nAction: delayed\nStatus: 4.2.2\n\n"
        "Final-Recipient: rfc822; full@rcpt.example.net\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\n"
    )
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert [(r.address, r.action, r.reason, r.permanent, r.hard) for r in verdict.recipients] == [
        ("late@rcpt.example.net", "delayed", "mailboxfull", False, False),
        ("full@rcpt.example.net", "failed", "mailboxfull", True, False),
    ]


def test_lenient_fields_crlf_missing_blank_lines_typos_and_no_action() -> None:
    status = (
        "reporting-mta: dns; mx.send.example.com\n"
        "final-recipient: RFC822; <One@Rcpt.Example.NET>\n"
        "action: failure\n"
        "status: 5.0.0\n"
        "diagnostic-code: smtp; 550 5.1.1 no such user\n"
        "Final-Recipient: rfc822; two@rcpt.example.net\n"
        "Diagnostic-Code: smtp; 452 4.2.2 Over quota\n"
    )
    verdict = classify(dsn(status, crlf=True))
    assert verdict.kind == "bounce"
    one, two = verdict.recipients
    # the status only in the diagnostic (5.0.0 is a catch-all) wins; "failure" is "failed"
    assert (one.address, one.action, one.status, one.hard) == ("one@rcpt.example.net", "failed", "5.1.1", True)
    # no Action: inferred from the 4.x.x code, so not permanent
    assert (two.action, two.status, two.permanent, two.reason) == ("delayed", "4.2.2", False, "mailboxfull")


def test_status_part_sent_as_text_plain_is_still_read() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; gone@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n",
        status_type="text/plain",
    )
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert "dsn:status-fields-in-text" in verdict.reasons
    assert verdict.recipients[0].hard


def test_relay_gloss_before_the_remote_answer() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.1.0\n"
        "Diagnostic-Code: smtp; 5.1.0 - Unknown address error 550-'5.7.1 <a@rcpt.example.net>...  spam"
        " content rejected' (delivery attempts: 0)\n"
    )
    (r,) = classify(raw).recipients
    assert r.status == "5.7.1"
    assert r.hard is False


def test_user_unknown_after_data_is_filtered() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.0.0\n"
        "Diagnostic-Code: smtp; 550 Unknown user a@rcpt.example.net\n",
        notification="... while talking to mx.rcpt.example.net.:\n>>> DATA\n<<< 550 Unknown user a@rcpt.example.net\n",
    )
    (r,) = classify(raw).recipients
    assert (r.reason, r.hard) == ("filtered", False)


def test_returned_message_as_message_rfc822() -> None:
    raw = dsn(
        PER_MESSAGE + "Final-Recipient: rfc822; a@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n",
        returned_type="message/rfc822",
        returned="From: s@send.example.com\nTo: a@rcpt.example.net\nMessage-ID: <m-77@send.example.com>\n\nHi\n",
    )
    assert classify(raw).original_message_id == "m-77@send.example.com"


def test_parse_status_fields_groups_and_unfolds() -> None:
    groups = parse_status_fields(
        "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\nAction: failed\r\n"
        "Diagnostic-Code: smtp; 550 first\r\n  second line\r\nFinal-Recipient: rfc822; c@d.example\r\n"
    )
    assert [g.get("final-recipient") for g in groups] == ["rfc822; a@b.example", "rfc822; c@d.example"]
    assert groups[0].get("diagnostic-code") == "smtp; 550 first second line"


def _ses(notification: dict[str, object]) -> bytes:
    body = json.dumps(notification)
    # mail systems fold the one long line of JSON at 998 characters with "!\n "
    folded = "!\n ".join(body[i : i + 200] for i in range(0, len(body), 200))
    return message(
        [
            ("From", "SES <no-reply@sns.amazonaws.com>"),
            ("To", "sender@send.example.com"),
            ("Subject", "AWS Notification Message"),
            ("x-amz-sns-message-id", "a9824ea2-483c-5c29-a61a-1e13d2f2a6c2"),
        ],
        folded + "\n\n--\nIf you wish to stop receiving notifications from this topic...\n",
    )


SES_MAIL = {
    "messageId": "0101-ses-id",
    "headers": [{"name": "Message-ID", "value": f"<{ORIGINAL_ID}>"}],
    "destination": ["gone@rcpt.example.net"],
}


def test_ses_bounce_notification() -> None:
    raw = _ses(
        {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bouncedRecipients": [
                    {
                        "emailAddress": "gone@rcpt.example.net",
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
            },
            "mail": SES_MAIL,
        }
    )
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert verdict.original_message_id == ORIGINAL_ID
    (r,) = verdict.recipients
    assert (r.address, r.status, r.hard, r.reason) == ("gone@rcpt.example.net", "5.1.1", True, "userunknown")
    assert verdict.reasons[0] == "dsn:ses-notification=bounce"


def test_ses_delivery_notification_inside_an_sns_envelope() -> None:
    inner = {
        "notificationType": "Delivery",
        "delivery": {"recipients": ["ok@rcpt.example.net"], "smtpResponse": "250 2.6.0 Message received"},
        "mail": SES_MAIL,
    }
    verdict = classify(_ses({"Type": "Notification", "Message": json.dumps(inner)}))
    assert verdict.kind == "delivery_report"
    (r,) = verdict.recipients
    assert (r.action, r.status, r.reason) == ("delivered", "2.6.0", "delivered")


def test_report_without_recipient_fields_is_left_to_the_next_detector() -> None:
    raw = dsn("Reporting-MTA: dns; mx.send.example.com\n")
    # no per-recipient block: not a DSN verdict; the text-bounce reader falls back to the returned To
    verdict = classify(raw)
    assert not any(r.startswith("dsn:") for r in verdict.reasons)
    assert "pattern:recipient-returned-to" in verdict.reasons


def _wrap(inner: bytes, *, subject: str) -> bytes:
    """``inner`` attached as message/rfc822 to a text part."""
    return message(
        [
            ("From", "Mail Delivery Subsystem <MAILER-DAEMON@relay.example.org>"),
            ("Subject", subject),
            ("Content-Type", 'multipart/mixed; boundary="wrap"'),
        ],
        "--wrap\nContent-Type: text/plain\n\nThe following addresses had permanent delivery errors\n"
        "--wrap\nContent-Type: message/rfc822\n\n" + inner.decode() + "\n--wrap--\n",
    )


def test_a_relay_wrapping_the_dsn_it_received_is_read() -> None:
    inner = dsn("Final-Recipient: rfc822; gone@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n")
    verdict = classify(_wrap(inner, subject="Returned mail: User unknown"))
    assert verdict.kind == "bounce"
    assert [r.address for r in verdict.recipients] == ["gone@rcpt.example.net"]


def test_a_bounce_of_a_bounce_reports_only_its_own_recipients() -> None:
    inner = dsn("Final-Recipient: rfc822; first@rcpt.example.net\nAction: failed\nStatus: 5.1.1\n", boundary="in")
    outer = dsn(
        "Final-Recipient: rfc822; second@rcpt.example.net\nAction: failed\nStatus: 5.7.1\n",
        returned_type="message/rfc822",
        returned=inner.decode(),
    )
    assert [r.address for r in classify(outer).recipients] == ["second@rcpt.example.net"]


def test_a_permanent_status_on_a_delayed_recipient_is_a_bounce() -> None:
    raw = dsn("Final-Recipient: rfc822; a@rcpt.example.net\nAction: delayed\nStatus: 5.1.1\n")
    verdict = classify(raw)
    assert verdict.kind == "bounce"
    assert verdict.recipients[0].permanent
