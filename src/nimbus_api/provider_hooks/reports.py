"""Each provider's payload read into ``Report`` rows: the same facts a DSN or a feedback report gives.

A ``bounce`` carries a ``Recipient`` built as the classifier builds one from a DSN (``classify.dsn``):
``permanent`` when the provider says the failure is final (SES ``Permanent``, Postmark ``HardBounce``,
SendGrid ``bounce``, Mailgun ``severity: permanent``, SMTP2GO ``hard``), the reason read from the
status and diagnostic the provider quotes. Where the provider says the address itself is bad (SES
``Permanent`` but for a refused message, Postmark ``HardBounce``, SendGrid ``bounce``, Mailgun ``bounce``,
SMTP2GO ``hard``: each suppresses it on its side), the recipient is ``hard`` whatever reason the wording
reads as (``userunknown`` when it reads as none). A temporary failure (SES ``Transient``, Postmark
``SoftBounce``, SendGrid ``blocked``, Mailgun ``temporary``, SMTP2GO ``soft``) is a bounce that is not
permanent: recorded, nothing counted or suppressed, as a delayed DSN. Everything else is ``other``.

``event_id`` is the provider's id of the event (SNS ``MessageId``, Postmark ``ID``, SendGrid
``sg_event_id``, Mailgun ``event-data.id``, SMTP2GO a digest of the event's fields, as it sends no id),
with the recipient appended where one notification names several.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from nimbus_api.classify import reasons as reasons_mod
from nimbus_api.classify.dsn import address_of, build_recipient, clean_diagnostic
from nimbus_api.classify.types import Recipient
from nimbus_api.provider_hooks.errors import HookPayloadMalformed

ReportKind = Literal["bounce", "complaint", "other"]


@dataclass(frozen=True)
class Report:
    event_id: str
    kind: ReportKind
    email: str = ""
    message_id_header: str = ""
    provider_message_id: str = ""
    recipient: Recipient | None = None
    feedback_type: str = ""


def _text(value: object, limit: int = 1000) -> str:
    return str(value)[:limit] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()[:250]


def bounce_recipient(
    email: str, *, permanent: bool, status: str, diagnostic: str, fired: str, provider_hard: bool = False
) -> Recipient:
    """The recipient as a DSN would give it; ``provider_hard``: the provider says the address is bad (and
    suppresses it on its side), which decides ``hard`` whatever reason the wording reads as."""
    diagnostic = clean_diagnostic(diagnostic)
    status = reasons_mod.find_status(status) or reasons_mod.find_last_status(diagnostic)
    recipient = build_recipient(
        address=email,
        action="failed" if permanent else "delayed",
        status=status if permanent or not status.startswith("5") else "",
        reply_code=reasons_mod.find_reply_code(diagnostic),
        diagnostic=diagnostic,
        fired=[fired],
    )
    if permanent and not recipient.permanent:
        recipient = replace(recipient, permanent=True, status=recipient.status or "5.0.0")
    if permanent and provider_hard and not recipient.hard:
        reason = "userunknown" if recipient.reason in ("undefined", "delivered") else recipient.reason
        recipient = replace(recipient, hard=True, reason=reason)
    return recipient


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise HookPayloadMalformed("the body is not JSON") from None


def _sub(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """``obj[name]`` when it is an object, else an empty one (optional parts of a payload)."""
    value = obj.get(name)
    return value if isinstance(value, dict) else {}


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise HookPayloadMalformed(f"{what} is not a JSON object")
    return value


# --- Amazon SES (the Message of an SNS notification) ------------------------------------------------


def ses(message: str, event_id: str) -> list[Report]:
    """The reports of a verified SNS notification; one that is not an SES notification (a test message
    published to the topic) is ``other``: authentic, so refusing it would only make SNS retry."""
    try:
        return _ses(_object(parse_json(message.encode()), "the SNS Message"), event_id)
    except HookPayloadMalformed:
        return [Report(event_id, "other")]


def _ses(obj: Mapping[str, Any], event_id: str) -> list[Report]:
    kind = obj.get("notificationType") or obj.get("eventType")
    mail = _sub(obj, "mail")
    header = ""
    for item in mail.get("headers") or []:
        if isinstance(item, dict) and str(item.get("name", "")).lower() == "message-id":
            header = _bare(_text(item.get("value")))
    common = mail.get("commonHeaders")
    if not header and isinstance(common, dict):
        header = _bare(_text(common.get("messageId")))
    ses_id = _text(mail.get("messageId"), 200)
    reports: list[Report] = []
    if kind == "Bounce":
        bounce = _object(obj.get("bounce"), "`bounce`")
        permanent = bounce.get("bounceType") == "Permanent"
        address_bad = bounce.get("bounceSubType") not in ("MessageTooLarge", "ContentRejected", "AttachmentRejected")
        for item in bounce.get("bouncedRecipients") or []:
            email = address_of(_text(_object(item, "a bounced recipient").get("emailAddress")))
            if email:
                recipient = bounce_recipient(
                    email,
                    permanent=permanent,
                    status=_text(item.get("status")),
                    diagnostic=_text(item.get("diagnosticCode")),
                    fired="provider:ses-bounce",
                    provider_hard=address_bad,
                )
                reports.append(Report(f"{event_id}#{email}", "bounce", email, header, ses_id, recipient))
    elif kind == "Complaint":
        complaint = _object(obj.get("complaint"), "`complaint`")
        feedback = _text(complaint.get("complaintFeedbackType"), 100).lower() or "abuse"
        for item in complaint.get("complainedRecipients") or []:
            email = address_of(_text(_object(item, "a complained recipient").get("emailAddress")))
            if email:
                reports.append(
                    Report(f"{event_id}#{email}", "complaint", email, header, ses_id, feedback_type=feedback)
                )
    if not reports:
        reports.append(Report(event_id, "other", message_id_header=header, provider_message_id=ses_id))
    return reports


# --- Postmark ---------------------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_FINAL = {"Blocked", "DMARCPolicy", "SpamNotification", "VirusNotification"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Unknown", "AutoResponder", "ChallengeVerification"}


def postmark(body: bytes) -> list[Report]:
    obj = _object(parse_json(body), "the body")
    event_id = _text(obj.get("ID"), 100)
    record = obj.get("RecordType")
    kind = obj.get("Type")
    email = address_of(_text(obj.get("Email")))
    provider_id = _text(obj.get("MessageID"), 200)
    if not event_id or not isinstance(record, str):
        raise HookPayloadMalformed("a Postmark webhook carries `RecordType` and `ID`")
    event_id = f"{record}:{event_id}"
    if email and (record == "SpamComplaint" or kind == "SpamComplaint"):
        return [Report(event_id, "complaint", email, "", provider_id, feedback_type="abuse")]
    if email and record == "Bounce" and kind in _POSTMARK_HARD | _POSTMARK_FINAL | _POSTMARK_SOFT:
        diagnostic = _text(obj.get("Details")) or _text(obj.get("Description"))
        if kind in _POSTMARK_HARD:
            recipient = bounce_recipient(
                email,
                permanent=True,
                status="",
                diagnostic=diagnostic,
                fired="provider:postmark-hard",
                provider_hard=True,
            )
        elif kind in _POSTMARK_FINAL:
            recipient = build_recipient(
                address=email,
                action="failed",
                status=reasons_mod.find_status(diagnostic) or "5.7.1",
                reply_code="",
                diagnostic=diagnostic,
                fired=["provider:postmark-blocked"],
                reason="blocked" if kind != "VirusNotification" else "virusdetected",
            )
        else:
            recipient = bounce_recipient(
                email, permanent=False, status="", diagnostic=diagnostic, fired="provider:postmark-soft"
            )
        return [Report(event_id, "bounce", email, "", provider_id, recipient)]
    return [Report(event_id, "other", email, "", provider_id)]


# --- SendGrid ---------------------------------------------------------------------------------------


def sendgrid_message_id(value: str) -> str:
    """``sg_message_id`` less its filter suffix: the id SendGrid answered the SMTP DATA with."""
    for marker in (".filter", ".recvd", ".ismtpd"):
        if marker in value:
            return value.split(marker, 1)[0]
    return value


def sendgrid(body: bytes) -> list[Report]:
    events = parse_json(body)
    if not isinstance(events, list):
        raise HookPayloadMalformed("a SendGrid Event Webhook body is a JSON array of events")
    reports = []
    for item in events[:10_000]:
        event = _object(item, "an event")
        event_id = _text(event.get("sg_event_id"), 200)
        name = event.get("event")
        if not event_id or not isinstance(name, str):
            raise HookPayloadMalformed("every SendGrid event carries `event` and `sg_event_id`")
        email = address_of(_text(event.get("email")))
        header = _bare(_text(event.get("smtp-id")))
        provider_id = sendgrid_message_id(_text(event.get("sg_message_id"), 300))
        if email and name == "bounce":
            permanent = event.get("type", "bounce") != "blocked"
            recipient = bounce_recipient(
                email,
                permanent=permanent,
                status=_text(event.get("status")),
                diagnostic=_text(event.get("reason")),
                fired="provider:sendgrid-" + ("bounce" if permanent else "blocked"),
                provider_hard=permanent,
            )
            reports.append(Report(event_id, "bounce", email, header, provider_id, recipient))
        elif email and name == "spamreport":
            reports.append(Report(event_id, "complaint", email, header, provider_id, feedback_type="abuse"))
        else:
            reports.append(Report(event_id, "other", email, header, provider_id))
    return reports


# --- Mailgun ----------------------------------------------------------------------------------------


def mailgun(obj: Mapping[str, Any]) -> list[Report]:
    data = _object(obj.get("event-data"), "`event-data`")
    event_id = _text(data.get("id"), 200)
    name = data.get("event")
    if not event_id or not isinstance(name, str):
        raise HookPayloadMalformed("Mailgun `event-data` carries `event` and `id`")
    email = address_of(_text(data.get("recipient")))
    headers = _sub(_sub(data, "message"), "headers")
    header = _bare(_text(headers.get("message-id")))
    if email and name == "failed":
        status = _sub(data, "delivery-status")
        permanent = data.get("severity") == "permanent"
        code = _text(status.get("code"))
        diagnostic = " ".join(p for p in (code, _text(status.get("message")), _text(status.get("description"))) if p)
        recipient = bounce_recipient(
            email,
            permanent=permanent,
            status="",
            diagnostic=diagnostic,
            fired=f"provider:mailgun-{name}",
            provider_hard=data.get("reason") in ("bounce", "suppress-bounce"),
        )
        return [Report(event_id, "bounce", email, header, header, recipient)]
    if email and name == "complained":
        return [Report(event_id, "complaint", email, header, header, feedback_type="abuse")]
    return [Report(event_id, "other", email, header, header)]


# --- SMTP2GO ----------------------------------------------------------------------------------------


def smtp2go(obj: Mapping[str, Any]) -> list[Report]:
    name = obj.get("event")
    if not isinstance(name, str):
        raise HookPayloadMalformed("an SMTP2GO webhook carries `event`")
    email = address_of(_text(obj.get("rcpt")) or _text(obj.get("email")))
    email_id = _text(obj.get("email_id"), 200)
    header = _bare(_text(obj.get("message-id") or obj.get("Message-Id") or obj.get("message_id")))
    seen = "|".join(_text(obj.get(k), 300) for k in ("event", "email_id", "rcpt", "email", "time", "bounce"))
    event_id = "sha256:" + hashlib.sha256(seen.encode()).hexdigest()
    if email and name == "bounce":
        permanent = obj.get("bounce", "hard") == "hard"
        recipient = bounce_recipient(
            email,
            permanent=permanent,
            status="",
            diagnostic=_text(obj.get("message")) or _text(obj.get("context")),
            fired="provider:smtp2go-" + ("hard" if permanent else "soft"),
            provider_hard=permanent,
        )
        return [Report(event_id, "bounce", email, header, email_id, recipient)]
    if email and name == "spam":
        return [Report(event_id, "complaint", email, header, email_id, feedback_type="abuse")]
    return [Report(event_id, "other", email, header, email_id)]
