"""Complaints: RFC 5965 feedback reports and the vendor feedback-loop formats."""

from __future__ import annotations

import json

import pytest

from nimbus_api.classify import classify
from tests.classify.mail import ORIGINAL_ID, RETURNED_HEADERS, message


def _arf(
    feedback: str,
    *,
    original_type: str = "message/rfc822",
    original: str = RETURNED_HEADERS + "\nHello\n",
    report_type: str | None = "feedback-report",
) -> bytes:
    ctype = 'multipart/report; boundary="arf"'
    if report_type:
        ctype += f"; report-type={report_type}"
    body = (
        "--arf\nContent-Type: text/plain\n\nThis is an email abuse report.\n"
        f"--arf\nContent-Type: message/feedback-report\n\n{feedback}\n"
        f"--arf\nContent-Type: {original_type}\n\n{original}\n"
        "--arf--\n"
    )
    return message(
        [
            ("From", "fbl@isp.example.net"),
            ("To", "abuse@send.example.com"),
            ("Subject", "Abuse report"),
            ("MIME-Version", "1.0"),
            ("Content-Type", ctype),
        ],
        body,
    )


def test_rfc5965_abuse_report() -> None:
    raw = _arf(
        "Feedback-Type: abuse\nUser-Agent: SomeFBL/1.0\nVersion: 1\n"
        "Original-Mail-From: <bounces@send.example.com>\nOriginal-Rcpt-To: <Someone@Rcpt.Example.NET>\n"
        "Arrival-Date: Thu, 03 Dec 2026 10:00:00 +0000\nSource-IP: 192.0.2.1\n"
    )
    verdict = classify(raw)
    assert verdict.kind == "complaint"
    assert verdict.feedback_type == "abuse"
    assert verdict.original_recipient == "someone@rcpt.example.net"
    assert verdict.original_message_id == ORIGINAL_ID
    (r,) = verdict.recipients
    assert (r.address, r.reason, r.hard) == ("someone@rcpt.example.net", "feedback", False)
    assert verdict.reasons[:3] == (
        "arf:report-type=feedback-report",
        "arf:feedback-report-part",
        "arf:feedback-type=abuse",
    )


@pytest.mark.parametrize("feedback_type", ["fraud", "virus", "other", "not-spam", "auth-failure", "opt-out"])
def test_feedback_types(feedback_type: str) -> None:
    verdict = classify(_arf(f"Feedback-Type: {feedback_type.upper()}\nOriginal-Rcpt-To: a@rcpt.example.net\n"))
    assert verdict.feedback_type == feedback_type


def test_headers_only_original_and_every_original_rcpt_to() -> None:
    raw = _arf(
        "Feedback-Type: abuse\nOriginal-Rcpt-To: a@rcpt.example.net\nOriginal-Rcpt-To: b@rcpt.example.net\n",
        original_type="text/rfc822-headers",
        original=RETURNED_HEADERS,
    )
    verdict = classify(raw)
    assert [r.address for r in verdict.recipients] == ["a@rcpt.example.net", "b@rcpt.example.net"]
    assert verdict.original_message_id == ORIGINAL_ID


def test_redacted_report_without_report_type_still_a_complaint() -> None:
    # no report-type parameter, no Original-Rcpt-To: the feedback part and the original's To suffice
    raw = _arf("Feedback-Type: abuse\nUser-Agent: FBL\n", report_type=None)
    verdict = classify(raw)
    assert verdict.kind == "complaint"
    assert verdict.recipients[0].address == "someone@rcpt.example.net"


def test_missing_feedback_type_defaults_to_abuse() -> None:
    verdict = classify(_arf("User-Agent: FBL\n"))
    assert verdict.feedback_type == "abuse"
    assert "arf:feedback-type-missing" in verdict.reasons


def test_microsoft_jmrp() -> None:
    body = (
        "--jmrp\nContent-Type: text/plain\n\nThis is a complaint.\n"
        "--jmrp\nContent-Type: message/rfc822\n\n"
        "X-HmXmrOriginalRecipient: <complainer@outlook.example.com>\n" + RETURNED_HEADERS + "\nHello\n--jmrp--\n"
    )
    raw = message(
        [
            ("From", "staff@hotmail.com"),
            ("Subject", "complaint about message from 192.0.2.1"),
            ("Content-Type", 'multipart/mixed; boundary="jmrp"'),
        ],
        body,
    )
    verdict = classify(raw)
    assert verdict.kind == "complaint"
    assert verdict.recipients[0].address == "complainer@outlook.example.com"
    assert verdict.original_message_id == ORIGINAL_ID
    assert verdict.reasons == ("arf:jmrp-x-hmxmroriginalrecipient",)


def test_ses_complaint_notification() -> None:
    notification = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "c@rcpt.example.net"}],
            "complaintFeedbackType": "abuse",
        },
        "mail": {"messageId": "0101-ses", "headers": [{"name": "Message-ID", "value": f"<{ORIGINAL_ID}>"}]},
    }
    raw = message(
        [("From", "SES <no-reply@sns.amazonaws.com>"), ("x-amz-sns-message-id", "1"), ("Subject", "AWS Notification")],
        json.dumps(notification) + "\n",
    )
    verdict = classify(raw)
    assert verdict.kind == "complaint"
    assert (verdict.feedback_type, verdict.original_message_id) == ("abuse", ORIGINAL_ID)
    assert verdict.recipients[0].address == "c@rcpt.example.net"


def test_apple_one_click_unsubscribe_is_an_opt_out() -> None:
    raw = message(
        [("From", "person@icloud.example.com"), ("Subject", "unsubscribe"), ("X-Apple-Unsubscribe", "true")],
        "Apple Mail sent this email to unsubscribe from the message.\n",
    )
    verdict = classify(raw)
    assert (verdict.kind, verdict.feedback_type) == ("complaint", "opt-out")
    assert verdict.recipients[0].address == "person@icloud.example.com"


def test_ordinary_multipart_mail_is_not_a_complaint() -> None:
    raw = message(
        [("From", "alice@example.com"), ("Subject", "photos"), ("Content-Type", 'multipart/mixed; boundary="b"')],
        "--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: message/rfc822\n\n"
        + RETURNED_HEADERS
        + "\nfwd\n--b--\n",
    )
    assert classify(raw).kind != "complaint"
