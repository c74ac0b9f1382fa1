"""The message a report is about: the returned ``message/rfc822`` or ``text/rfc822-headers`` part.

Bounces and complaints carry (a copy of, or the headers of) our message; its Message-ID is how a
report is matched to what we sent. MTAs without MIME reports paste the headers into the body after a
separator line ("------ This is a copy of the message, including all the headers. ------"), so the
body is searched too, after the first such marker.
"""

from __future__ import annotations

import re
from email.message import Message

from nimbus_api.classify import mimeparse
from nimbus_api.classify.parsing import Parsed, decode_header_value, message_ids

RETURNED_TYPES = frozenset(
    {"message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global", "message/global-headers"}
)
_BODY_MSGID_RE = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.I | re.M)


def returned_parts(parsed: Parsed) -> list[Message]:
    """The returned message (or its headers) as parsed messages, in MIME order."""
    cached: list[Message] | None = parsed.memo.get("returned_parts")
    if cached is not None:
        return cached
    found: list[Message] = []
    for part in parsed.parts_of_type(RETURNED_TYPES):
        payload = part.get_payload()
        if isinstance(payload, list):
            found.extend(p for p in payload if isinstance(p, Message))
        else:
            text = parsed.part_text(part)
            if text:
                found.append(_parse_headers(text))
    parsed.memo["returned_parts"] = found
    return found


def _parse_headers(text: str) -> Message:
    try:
        return mimeparse.parse_headers_text(text)
    except Exception:
        return Message()


def returned_message_id(parsed: Parsed, text: str = "") -> str:
    """The Message-ID of the returned message; ``""`` when the report does not carry one.

    ``text`` is searched (after the returned parts) for a pasted ``Message-ID:`` header line.
    """
    for returned in returned_parts(parsed):
        try:
            ids = message_ids(decode_header_value(returned.get("Message-ID")))
        except Exception:
            ids = ()
        if ids:
            return ids[0]
    if text:
        match = _BODY_MSGID_RE.search(text)
        if match:
            ids = message_ids(match.group(1))
            if ids:
                return ids[0]
    return ""


def returned_header(parsed: Parsed, name: str) -> str:
    """A header of the returned message (``To``, ``From``...); ``""`` when absent."""
    for returned in returned_parts(parsed):
        try:
            value = decode_header_value(returned.get(name))
        except Exception:
            value = ""
        if value:
            return value
    return ""
