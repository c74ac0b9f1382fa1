"""Parse raw message bytes without ever raising: the classifier's view of a message.

Inbound mail is hostile or broken often enough (bad charsets, unterminated MIME, no headers at all,
25 MB attachments) that every step here degrades instead of failing: a defect becomes a ``note`` and the
message is still classified, at worst as ``other``. ``compat32`` is used because it keeps header values
as the bytes-ish strings the MTA wrote; ``email.policy.default`` raises on access to some malformed
headers (a bare ``<`` in Message-ID, an unknown encoded-word charset), which must never stop a sync.
"""

from __future__ import annotations

import codecs
import email.header
import email.parser
import email.policy
import email.utils
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from nimbus_api.classify import mimeparse
from nimbus_api.classify.mimeparse import simple_param

#: Messages are cut at this many bytes before parsing: the classifier needs headers, the report parts
#: and the first text part, none of which is ever this far in. Bigger bodies are attachments.
PARSE_LIMIT = 4 * 1024 * 1024
_MSGID_RE = re.compile(r"<([^<>\s]+)>")


def decode_header_value(value: object) -> str:
    """A header's value as one line of text; encoded words decoded, undecodable bytes replaced."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        value = str(value)
    text = str(value)
    if "=?" in text:
        try:
            pieces = email.header.decode_header(text)
            out = []
            for chunk, charset in pieces:
                if isinstance(chunk, bytes):
                    out.append(_decode_bytes(chunk, charset))
                else:
                    out.append(chunk)
        except Exception:  # a bad encoded word leaves the raw text
            out = [text]
        text = "".join(out)
    # ``\s+`` runs to one space, stripped: ``str.split`` splits on the same (Unicode) whitespace
    return " ".join(text.split())


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def message_ids(value: str) -> tuple[str, ...]:
    """The Message-IDs in a header value, brackets stripped (``<a@b> <c@d>`` -> ``("a@b", "c@d")``)."""
    found = tuple(_MSGID_RE.findall(value))
    if found:
        return found
    bare = value.strip()
    return (bare,) if bare and " " not in bare and "@" in bare else ()


_ANGLE_RE = re.compile(r"<([^<>\s]*@[^<>\s]*)>")
_BARE_ADDR_RE = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def address_in(value: str) -> str:
    """The address of a From-like header value, lower-cased: the last ``<...>`` holding one, else
    the first bare ``local@domain``; ``""`` when there is none. (A regex, not ``parseaddr``: faster,
    and a display name that looks like an address does not fool it.)"""
    angled = _ANGLE_RE.findall(value)
    if angled:
        return str(angled[-1]).strip().lower()
    match = _BARE_ADDR_RE.search(value)
    return match.group(0).strip(".").lower() if match else ""


_NO_CHARSET = object()


def part_text(part: Message, charset: object = _NO_CHARSET) -> str:
    """A non-multipart part's payload as text (transfer encoding undone, charset applied, lenient).
    ``charset``: ``part.get_content_charset()`` when the caller knows it already."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes):
        return str(payload)
    if charset is _NO_CHARSET:
        charset = part.get_content_charset()
    return _decode_bytes(payload, charset if isinstance(charset, str) else None)


@dataclass(slots=True)
class Parsed:
    """A parsed message plus what went wrong while parsing it.

    What detectors ask of it more than once is computed once: decoded header values, each part's
    content type and charset, each part's text (transfer encoding undone once), the part lists.
    """

    message: Message
    raw: bytes
    notes: list[str] = field(default_factory=list)
    truncated: bool = False
    #: values detectors compute more than once (the From address, the parts, the report text)
    memo: dict[str, Any] = field(default_factory=dict)
    #: per-part caches, keyed by ``id(part)``; ``_alive`` holds every part keyed, so no id is reused
    #: while this object lives (the message's own parts are held by the tree anyway)
    _alive: dict[int, Message] = field(default_factory=dict, init=False, repr=False)
    _types: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _strict_types: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _charsets: dict[int, str | None] = field(default_factory=dict, init=False, repr=False)
    _texts: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _decoded: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def _header_map(self) -> dict[str, list[object]]:
        """Raw header values by lower-cased name (built once: ``Message.get`` scans every header)."""
        found: dict[str, list[object]] | None = self.memo.get("header_map")
        if found is None:
            found = {}
            try:
                for name, value in self.message.raw_items():
                    key = str(name).lower()
                    values = found.get(key)
                    if values is None:
                        found[key] = [value]
                    else:
                        values.append(value)
            except Exception:
                self.note("headers:unreadable")
            self.memo["header_map"] = found
        return found

    def header(self, name: str) -> str:
        """The first value of a header, decoded; ``""`` when absent."""
        key = name.lower()
        cached = self._decoded.get(key)
        if cached is not None:
            return cached
        values = self._header_map().get(key)
        if not values:
            value = ""
        else:
            try:
                value = decode_header_value(values[0])
            except Exception:
                value = ""
        self._decoded[key] = value
        return value

    def headers(self, name: str) -> list[str]:
        try:
            return [decode_header_value(v) for v in self._header_map().get(name.lower(), [])]
        except Exception:
            return []

    def has_header(self, name: str) -> bool:
        return name.lower() in self._header_map()

    @property
    def content_type(self) -> str:
        found: str | None = self.memo.get("content_type")
        if found is None:
            found = self.memo["content_type"] = self.message.get_content_type()
        return found

    @property
    def report_type(self) -> str:
        """The ``report-type`` parameter of a ``multipart/report``, lower-cased; ``""`` otherwise."""
        found: str | None = self.memo.get("report_type")
        if found is None:
            found = ""
            if self.content_type == "multipart/report":
                found = str(self.message.get_param("report-type") or "").lower()
            self.memo["report_type"] = found
        return found

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def from_address(self) -> str:
        """The From address, lower-cased; ``""`` when there is none that parses."""
        if "from_address" not in self.memo:
            self.memo["from_address"] = address_in(self.header("From"))
        return str(self.memo["from_address"])

    @property
    def message_id(self) -> str:
        ids = message_ids(self.header("Message-ID"))
        return ids[0] if ids else ""

    def walk(self) -> Iterator[Message]:
        """Every part, depth first (computed once)."""
        return iter(part for _, part in self.typed_parts())

    def _seed_types(self, order: list[tuple[Message, str]]) -> None:
        """Take the parts and their ``get_content_type()`` from the parser, which worked them out
        (``order``: ``walk()`` order, the message itself first)."""
        parts: list[tuple[str, Message]] = []
        for part, strict in order:
            lenient = strict.split(None, 1)[0] if strict else strict
            self._types[id(part)] = lenient
            self._strict_types[id(part)] = strict
            parts.append((lenient, part))
        self.memo["parts"] = parts
        self.memo["content_type"] = order[0][1]

    def _strict_type(self, part: Message) -> str:
        """``part.get_content_type()``, computed once per part."""
        found = self._strict_types.get(id(part))
        if found is None:
            found = self._strict_types[id(part)] = part.get_content_type()
            self._alive[id(part)] = part
        return found

    def part_type(self, part: Message) -> str:
        """``content_type(part)``, computed once per part."""
        key = id(part)
        found = self._types.get(key)
        if found is None:
            found = self._types[key] = content_type(part)
            self._alive[key] = part
        return found

    def charset(self, part: Message) -> str | None:
        """``part.get_content_charset()``, computed once per part."""
        key = id(part)
        if key in self._charsets:
            return self._charsets[key]
        # a Content-Type that does not say "charset" has no such parameter: ``None``, as
        # ``get_content_charset`` would say after parsing every parameter
        value = part.get("content-type")
        found = None
        if value is not None and "charset" in str(value).lower():
            raw = simple_param(part, "charset")
            if raw is not None:
                try:  # ``get_content_charset``: a non-ASCII name is no charset; names are lower-cased
                    raw.encode("us-ascii")
                    found = raw.lower()
                except UnicodeError:
                    found = None
        self._charsets[key] = found
        self._alive[key] = part
        return found

    def part_text(self, part: Message) -> str:
        """``part_text(part)``, computed once per part."""
        key = id(part)
        found = self._texts.get(key)
        if found is None:
            found = self._texts[key] = part_text(part, self.charset(part))
            self._alive[key] = part
        return found

    def typed_parts(self) -> list[tuple[str, Message]]:
        """``(content type, part)`` for every part, depth first (computed once)."""
        parts: list[tuple[str, Message]] | None = self.memo.get("parts")
        if parts is None:
            parts = []
            try:
                parts.extend((self.part_type(part), part) for part in self.message.walk())
            except Exception:
                self.note("mime:walk-failed")
            self.memo["parts"] = parts
        return parts

    def parts_of_type(self, types: frozenset[str]) -> list[Message]:
        """This message's parts of the given types, not those inside an attached message (a
        bounce of a bounce carries the first one's delivery-status part in its returned copy)."""
        own: list[tuple[str, Message]] | None = self.memo.get("own_parts")
        if own is None:
            own = []
            stack: list[Message] = [self.message]
            while stack:
                part = stack.pop(0)
                ctype = self.part_type(part)
                own.append((ctype, part))
                if ctype.startswith("message/"):
                    continue
                payload = part.get_payload() if part.is_multipart() else None
                if isinstance(payload, list):
                    stack[0:0] = [p for p in payload if isinstance(p, Message)]
            self.memo["own_parts"] = own
        return [part for ctype, part in own if ctype in types]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def first_text(self, subtype: str = "plain") -> str:
        """The first ``text/<subtype>`` part that is not an attachment nor inside a returned message."""
        key = f"first_text:{subtype}"
        found: str | None = self.memo.get(key)
        if found is None:
            found = self.memo[key] = self._first_text(subtype)
        return found

    def _first_text(self, subtype: str) -> str:
        wanted = f"text/{subtype}"
        for part in self._own_parts():
            if self.part_type(part) == wanted and not _is_attachment(part):
                return self._text_of(part)
        return ""

    def _text_of(self, part: Message) -> str:
        """``part_text``, noting bytes its declared charset does not decode."""
        charset = self.charset(part)
        if not charset or not _known_charset(charset):
            return self.part_text(part)
        try:
            payload = part.get_payload(decode=True)
        except Exception:  # a payload the parser cannot decode at all is noted, never raised
            self.note("mime:undecodable-payload")
            return self.part_text(part)
        if not isinstance(payload, bytes):
            return self.part_text(part)
        try:
            text = payload.decode(charset)
        except (UnicodeDecodeError, LookupError):
            self.note("charset:undecodable")
            text = _decode_bytes(payload, charset)
        # the same text ``part_text`` gives (the declared charset first), so it serves both
        self._texts.setdefault(id(part), text)
        self._alive[id(part)] = part
        return text

    def body_text(self) -> str:
        """The readable text: the first text/plain part, else the first text/html part, tags stripped."""
        text = self.first_text("plain")
        if text:
            return text
        html = self.first_text("html")
        return strip_html(html) if html else ""

    def report_text(self) -> str:
        """``body_text``, or when MIME parsing found no parts (a multipart whose boundary never
        appears), the raw body: reports with a broken boundary are still read."""
        if "report_text" not in self.memo:
            self.memo["report_text"] = self._report_text()
        return str(self.memo["report_text"])

    def _report_text(self) -> str:
        text = self.body_text()
        if text:
            return text
        payload = self.message.get_payload()
        if isinstance(payload, str) and self.message.is_multipart() is False and payload:
            self.note("mime:no-parts-read-as-text")
            return payload
        return ""

    def _own_parts(self) -> list[Message]:
        """Leaf parts of this message, not descending into attached messages (``message/rfc822``);
        computed once."""
        found: list[Message] | None = self.memo.get("own_leaves")
        if found is not None:
            return found
        found = []
        stack = [self.message]
        while stack:
            part = stack.pop(0)
            if part.is_multipart():
                payload = part.get_payload()
                if isinstance(payload, list):
                    stack[0:0] = [p for p in payload if isinstance(p, Message)]
                continue
            if self._strict_type(part).split("/")[0] == "message":
                continue
            found.append(part)
        self.memo["own_leaves"] = found
        return found


def content_type(part: Message) -> str:
    """``part.get_content_type()``, lenient: ``text/plain\n charset=...`` (no ``;``) is ``text/plain``."""
    value = part.get_content_type()
    return value.split(None, 1)[0] if value else value


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).lower()
    return disposition.startswith("attachment")


_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.S | re.I)
_BR_RE = re.compile(r"<\s*(br|/p|/div|/tr|/li)\b[^>]*>", re.I)


def strip_html(html: str) -> str:
    """Rough text of an HTML body for classification (never for display)."""
    import html as html_lib

    text = _BR_RE.sub("\n", html)
    text = _TAG_RE.sub(" ", text)
    return html_lib.unescape(text)


def parse(raw: bytes) -> Parsed:
    """Parse ``raw``; never raises. Oversized input is cut at ``PARSE_LIMIT`` and noted."""
    truncated = False
    data = raw
    if len(data) > PARSE_LIMIT:
        data = data[:PARSE_LIMIT]
        truncated = True
    try:
        message, order = mimeparse.parse_bytes_typed(data)
    except Exception:  # the stdlib parser is lenient, but a guard costs nothing
        message = Message()
        parsed = Parsed(message=message, raw=raw, truncated=truncated)
        parsed.note("mime:unparseable")
        return parsed
    parsed = Parsed(message=message, raw=raw, truncated=truncated)
    if order:
        parsed._seed_types(order)
    if truncated:
        parsed.note("size:truncated-for-parsing")
    if not len(message):
        parsed.note("headers:none")
    for defect in getattr(message, "defects", []) or []:
        parsed.note(f"mime:{type(defect).__name__}")
    for ctype, part in parsed.typed_parts():
        if ctype.startswith("text/"):
            charset = parsed.charset(part)
            if charset and not _known_charset(charset):
                parsed.note("charset:unknown")
    return parsed


@functools.lru_cache(maxsize=256)
def _known_charset(charset: str) -> bool:
    try:
        codecs.lookup(charset)
    except LookupError:
        return False
    return True
