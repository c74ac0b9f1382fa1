"""The providers' documented sample payloads, as their documentation shows them, with the recipient, the
Message-ID and the ids a test needs put in their place (``email``, ``message_id``...).

Sources: Amazon SES developer guide, *Examples of Amazon SNS notifications for Amazon SES* (bounce with a
DSN, complaint with a feedback report); Postmark, *Bounce webhook* and *Spam complaint webhook*; Twilio
SendGrid, *Event Webhook reference* (bounce, dropped, spamreport events); Mailgun, *Webhooks* (the
``failed`` and ``complained`` events with their ``signature`` block); SMTP2GO, *Webhooks* (the standard
reported data of ``bounce`` and ``spam`` events).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any


def _ses_mail(email: str, message_id: str) -> dict[str, Any]:
    return {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "source": "john@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        "callerIdentity": "IAM_user_or_role_name",
        "destination": [email],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": '"John Doe" <john@example.com>'},
            {"name": "To", "value": f'"Jane Doe" <{email}>'},
            {"name": "Message-ID", "value": message_id},
            {"name": "Subject", "value": "Hello"},
            {"name": "Content-Type", "value": 'text/plain; charset="UTF-8"'},
            {"name": "Content-Transfer-Encoding", "value": "base64"},
            {"name": "Date", "value": "Wed, 27 Jan 2016 14:05:45 +0000"},
        ],
        "commonHeaders": {
            "from": ["John Doe <john@example.com>"],
            "date": "Wed, 27 Jan 2016 14:05:45 +0000",
            "to": [f"Jane Doe <{email}>"],
            "messageId": message_id,
            "subject": "Hello",
        },
    }


def ses_bounce(email: str, message_id: str, *, bounce_type: str = "Permanent") -> str:
    return json.dumps(
        {
            "notificationType": "Bounce",
            "bounce": {
                "feedbackId": "0100018c-00000000-0000-0000-0000-000000000000-000000",
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": email,
                        "action": "failed",
                        "status": "5.1.1" if bounce_type == "Permanent" else "4.4.7",
                        "diagnosticCode": f"smtp; 550 5.1.1 <{email}>... User unknown"
                        if bounce_type == "Permanent"
                        else "smtp; 421 4.4.7 Delivery time expired",
                    }
                ],
                "timestamp": "2016-01-27T14:59:38.237Z",
                "remoteMtaIp": "127.0.2.0",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            },
            "mail": _ses_mail(email, message_id),
        }
    )


def ses_complaint(email: str, message_id: str) -> str:
    return json.dumps(
        {
            "notificationType": "Complaint",
            "complaint": {
                "userAgent": "AnyCompany Feedback Loop (V0.01)",
                "complainedRecipients": [{"emailAddress": email}],
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2016-01-27T14:59:38.237Z",
                "timestamp": "2016-01-27T14:59:38.237Z",
                "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
            },
            "mail": _ses_mail(email, message_id),
        }
    )


def postmark_bounce(email: str, postmark_id: str, *, kind: str = "HardBounce") -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": secrets.randbelow(10**12),
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 4096,
        "Name": "Hard bounce" if kind == "HardBounce" else "Soft bounce/Undeliverable",
        "Tag": "Test",
        "MessageID": postmark_id,
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "Test content",
    }


def postmark_spam_complaint(email: str, postmark_id: str) -> dict[str, Any]:
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": secrets.randbelow(10**12),
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "Test",
        "MessageID": postmark_id,
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
        "ServerID": 1234,
        "Description": "",
        "Details": "Test spam complaint details",
        "Email": email,
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Test subject",
        "Content": "<Abuse report dump>",
    }


def sendgrid_events(bounced: str, bounced_id: str, complained: str, complained_id: str) -> list[dict[str, Any]]:
    now = int(time.time())
    return [
        {
            "email": bounced,
            "timestamp": now,
            "smtp-id": bounced_id,
            "event": "bounce",
            "category": "cat facts",
            "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "reason": "500 unknown recipient",
            "status": "5.0.0",
            "type": "bounce",
        },
        {
            "email": bounced,
            "timestamp": now,
            "smtp-id": bounced_id,
            "event": "dropped",
            "category": "cat facts",
            "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "reason": "Bounced Address",
            "status": "5.0.0",
        },
        {
            "email": complained,
            "timestamp": now,
            "smtp-id": complained_id,
            "event": "spamreport",
            "category": "cat facts",
            "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        },
    ]


def mailgun_event(email: str, message_id: str, *, event: str = "failed", severity: str = "permanent") -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": event,
        "timestamp": time.time(),
        "id": secrets.token_urlsafe(16),
        "log-level": "error" if event == "failed" else "warn",
        "envelope": {"sender": "bob@sandbox.mailgun.org", "transport": "smtp", "targets": email},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "message": {
            "headers": {
                "to": f"Alice <{email}>",
                "message-id": message_id.strip("<>"),
                "from": "Bob <bob@sandbox.mailgun.org>",
                "subject": "Test permanent_fail webhook",
            },
            "attachments": [],
            "size": 111,
        },
        "recipient": email,
        "recipient-domain": email.split("@")[1],
        "campaigns": [],
        "tags": ["my_tag_1", "my_tag_2"],
        "user-variables": {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"},
    }
    if event == "failed":
        data["severity"] = severity
        data["reason"] = "bounce" if severity == "permanent" else "generic"
        data["delivery-status"] = {
            "attempt-no": 1,
            "message": "5.1.1 The email account that you tried to reach does not exist."
            if severity == "permanent"
            else "4.2.2 The email account that you tried to reach is over quota.",
            "code": 550 if severity == "permanent" else 452,
            "description": "",
            "session-seconds": 0.1,
        }
    return data


def smtp2go_event(email: str, message_id: str, *, event: str = "bounce", bounce: str = "hard") -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": event,
        "time": "2024-05-01T10:00:00Z",
        "sendtime": "2024-05-01T09:59:58Z",
        "sender": "sender@example.com",
        "from": "sender@example.com",
        "rcpt": email,
        "recipients": [email],
        "auth": "smtp-user",
        "email_id": f"1s{secrets.token_hex(3)}-{secrets.token_hex(3)}-{secrets.token_hex(2)}",
        "subject": "Test subject",
        "message-id": message_id,
    }
    if event == "bounce":
        body["bounce"] = bounce
        body["host"] = "mx.example.org [192.0.2.1]"
        body["message"] = (
            f"550 5.1.1 <{email}>: Recipient address rejected: User unknown"
            if bounce == "hard"
            else "452 4.2.2 Mailbox full"
        )
    return body
