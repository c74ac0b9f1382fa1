"""Amazon SES notifications delivered by email (SNS topic subscribed to an address).

The body is one JSON object: ``notificationType`` ``Bounce``, ``Complaint`` or ``Delivery``, with the
recipients and the SES ``mail.messageId`` of the message it is about. Mail systems fold the long line
(``"!\\n "`` inserted every 998 characters), so that folding is undone before decoding.
"""

from __future__ import annotations

import json
from typing import Any

from nimbus_api.classify.parsing import Parsed

_FOLD = ("!\r\n ", "!\n ")


def notification(parsed: Parsed) -> dict[str, Any] | None:
    """The SES notification object of a message, or ``None`` when it is not one."""
    if "ses" not in parsed.memo:
        parsed.memo["ses"] = _notification(parsed)
    found: dict[str, Any] | None = parsed.memo["ses"]
    return found


def _notification(parsed: Parsed) -> dict[str, Any] | None:
    if not (parsed.has_header("x-amz-sns-message-id") or "amazonaws.com" in parsed.from_address):
        return None
    text = parsed.first_text("plain")
    start = text.find("{")
    if start < 0 or "notificationType" not in text:
        return None
    body = text[start:]
    for fold in _FOLD:
        body = body.replace(fold, "")
    try:
        obj, _ = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("Message"), str):
        # the SNS envelope (raw message delivery off): the notification is a JSON string inside
        try:
            obj = json.loads(obj["Message"])
        except ValueError:
            return None
    if not isinstance(obj, dict) or not isinstance(obj.get("notificationType"), str):
        return None
    return obj


def mail_message_id(obj: dict[str, Any]) -> str:
    """The Message-ID header of the original message when SES kept the headers, else SES's id."""
    mail = obj.get("mail")
    if not isinstance(mail, dict):
        return ""
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
                value = str(header.get("value", "")).strip().strip("<>")
                if value:
                    return value
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return str(common["messageId"]).strip().strip("<>")
    message_id = mail.get("messageId")
    return str(message_id) if isinstance(message_id, str) else ""


def section(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    return value if isinstance(value, dict) else {}


def dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
