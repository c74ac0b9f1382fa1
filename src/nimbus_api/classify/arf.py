"""Complaints: RFC 5965 feedback reports and the vendor feedback-loop formats that are not ARF.

* ARF: ``multipart/report; report-type=feedback-report`` (or any message with a
  ``message/feedback-report`` part): Feedback-Type, Original-Rcpt-To (one recipient each),
  Original-Mail-From, and the original from the ``message/rfc822`` / ``text/rfc822-headers`` part.
* Microsoft JMRP (Hotmail / Outlook.com): ``multipart/mixed`` from ``staff@hotmail.com`` with the
  complained message attached, the recipient in ``X-HmXmrOriginalRecipient``.
* Amazon SES ``Complaint`` notifications (JSON by email).
* Apple Mail's one-click unsubscribe (``X-Apple-Unsubscribe: true``): an ``opt-out`` report.

Each complaint has at least one recipient (``reason="feedback"``), its address ``""`` when the report
redacts it.
"""

from __future__ import annotations

import re

from nimbus_api.classify import ses
from nimbus_api.classify.dsn import address_of
from nimbus_api.classify.original import returned_header, returned_message_id, returned_parts
from nimbus_api.classify.parsing import Parsed, decode_header_value
from nimbus_api.classify.types import Classification, Recipient

FEEDBACK_PART_TYPES = frozenset({"message/feedback-report"})
_JMRP_SUBJECT_RE = re.compile(r"complaint about message from", re.I)


def detect(parsed: Parsed) -> Classification | None:
    return _arf(parsed) or _jmrp(parsed) or _ses(parsed) or _apple_unsubscribe(parsed)


def _complaint(
    parsed: Parsed,
    reasons: list[str],
    feedback_type: str,
    addresses: list[str],
    original_message_id: str,
) -> Classification:
    addresses = list(dict.fromkeys(addresses)) or [""]
    recipients = tuple(Recipient(address=a, action="delivered", reason="feedback") for a in addresses)
    return Classification(
        kind="complaint",
        reasons=tuple(reasons),
        recipients=recipients,
        original_message_id=original_message_id,
        original_recipient=addresses[0],
        feedback_type=feedback_type,
    )


def _arf(parsed: Parsed) -> Classification | None:
    reasons: list[str] = []
    if parsed.report_type == "feedback-report":
        reasons.append("arf:report-type=feedback-report")
    feedback_parts = parsed.parts_of_type(FEEDBACK_PART_TYPES)
    texts = [parsed.part_text(p) for p in feedback_parts] + [_message_fields(p) for p in feedback_parts]
    if texts:
        reasons.append("arf:feedback-report-part")
    if not reasons:
        return None
    fields: dict[str, list[str]] = {}
    for text in texts:
        for line in _unfold(text):
            name, sep, value = line.partition(":")
            if sep and name and " " not in name.strip():
                fields.setdefault(name.strip().lower(), []).append(value.strip())
    feedback_type = (fields.get("feedback-type") or [""])[0].lower()
    if feedback_type:
        reasons.append(f"arf:feedback-type={feedback_type}")
    else:
        feedback_type = "abuse"
        reasons.append("arf:feedback-type-missing")
    addresses = [a for a in (address_of(v) for v in fields.get("original-rcpt-to", [])) if a]
    if not addresses:
        addresses = [a for a in (address_of(v) for v in fields.get("removal-recipient", [])) if a]
    if not addresses:
        to = address_of(returned_header(parsed, "To"))
        if to:
            addresses = [to]
    return _complaint(parsed, reasons, feedback_type, addresses, returned_message_id(parsed))


def _message_fields(part: object) -> str:
    """compat32 parses ``message/feedback-report`` into sub-messages: their fields as text."""
    from email.message import Message

    if not isinstance(part, Message):
        return ""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return ""
    lines: list[str] = []
    for sub in payload:
        if isinstance(sub, Message):
            lines.extend(f"{k}: {decode_header_value(v)}" for k, v in sub.raw_items())
    return "\n".join(lines)


def _unfold(text: str) -> list[str]:
    out: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line[:1] in {" ", "\t"} and out:
            out[-1] += " " + line.strip()
        elif line.strip():
            out.append(line.strip())
    return out


def _jmrp(parsed: Parsed) -> Classification | None:
    originals = returned_parts(parsed)
    recipient = ""
    for original in originals:
        recipient = address_of(decode_header_value(original.get("X-HmXmrOriginalRecipient")))
        if recipient:
            break
    from_hotmail = parsed.from_address.endswith(("@hotmail.com", "@outlook.com"))
    if not recipient and not (from_hotmail and _JMRP_SUBJECT_RE.search(parsed.subject) and originals):
        return None
    reasons = ["arf:jmrp-x-hmxmroriginalrecipient" if recipient else "arf:jmrp-subject"]
    return _complaint(parsed, reasons, "abuse", [recipient] if recipient else [], returned_message_id(parsed))


def _ses(parsed: Parsed) -> Classification | None:
    obj = ses.notification(parsed)
    if obj is None or obj.get("notificationType") != "Complaint":
        return None
    complaint = ses.section(obj, "complaint")
    addresses = [address_of(str(r.get("emailAddress", ""))) for r in ses.dicts(complaint.get("complainedRecipients"))]
    feedback_type = str(complaint.get("complaintFeedbackType") or "abuse").lower()
    reasons = ["arf:ses-notification=complaint", f"arf:feedback-type={feedback_type}"]
    return _complaint(parsed, reasons, feedback_type, [a for a in addresses if a], ses.mail_message_id(obj))


def _apple_unsubscribe(parsed: Parsed) -> Classification | None:
    if parsed.header("X-Apple-Unsubscribe").lower() != "true":
        return None
    reasons = ["arf:x-apple-unsubscribe", "arf:feedback-type=opt-out"]
    return _complaint(parsed, reasons, "opt-out", [parsed.from_address] if parsed.from_address else [], "")
