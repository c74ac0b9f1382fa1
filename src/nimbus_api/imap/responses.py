"""Parsing what aioimaplib hands back: untagged lines without ``* NAME ``, literals as ``bytearray``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from nimbus_api.imap.names import decode_folder_name
from nimbus_api.imap.types import Folder


class Reply(Protocol):
    """aioimaplib's ``Response``: result ``OK``/``NO``/``BAD``; the last line is the tagged text."""

    @property
    def result(self) -> str: ...

    @property
    def lines(self) -> list[bytes]: ...


_LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\)\s+(?P<delim>NIL|"(?:[^"\\]|\\.)*")\s+(?P<name>.*)$', re.I | re.S)
_LITERAL_RE = re.compile(rb"^\{(\d+)\+?\}$")
_RESPONSE_CODE_RE = re.compile(r"^\[([A-Za-z-]+)")
HEADER_NAME_RE = re.compile(r"[!-9;-~]+")
CONTROL_RE = re.compile(r"[\x00\r\n]")
CAPABILITY_RE = re.compile(rb"CAPABILITY ([^\]\r\n]*)", re.I)


def _unquote(token: bytes) -> bytes:
    return re.sub(rb"\\(.)", rb"\1", token[1:-1])


def _read_astring(text: bytes) -> tuple[bytes | None, bytes]:
    """(value, rest) of a quoted string or atom at the start of ``text``; (None, text) for a literal."""
    text = text.lstrip()
    if text.startswith(b'"'):
        match = re.match(rb'"(?:[^"\\]|\\.)*"', text, re.S)
        if match:
            return _unquote(match.group(0)), text[match.end() :]
    if _LITERAL_RE.match(text.strip()):
        return None, text
    value, _, rest = text.partition(b" ")
    return value, rest


def _decode_name(raw: bytes) -> str:
    name = decode_folder_name(raw.decode("utf-8", "replace"))
    return "INBOX" if name.upper() == "INBOX" else name


def parse_list(lines: Sequence[bytes | bytearray]) -> list[Folder]:
    """Folders from the untagged LIST lines (quoted, atom and literal names)."""
    folders: list[Folder] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if isinstance(line, bytearray):  # a literal not preceded by a LIST line
            continue
        match = _LIST_RE.match(line)
        if not match:
            continue
        flags = [f.decode("ascii", "replace") for f in match.group("flags").split()]
        delim_raw = match.group("delim")
        delimiter = None if delim_raw.upper() == b"NIL" else _unquote(delim_raw).decode("utf-8", "replace")
        name, _ = _read_astring(match.group("name"))
        if name is None:  # literal: the name is the next element
            if i < len(lines) and isinstance(lines[i], bytearray):
                name = bytes(lines[i])
                i += 1
            else:
                continue
        folders.append(Folder(name=_decode_name(name), flags=flags, delimiter=delimiter))
    return folders


def untagged(reply: Reply) -> list[bytes]:
    return list(reply.lines[:-1])


def tagged_text(reply: Reply) -> bytes:
    return bytes(reply.lines[-1]) if reply.lines else b""


def number(pattern: bytes, text: bytes) -> int | None:
    match = re.search(pattern, text, re.I)
    return int(match.group(1)) if match else None


def search_uids(reply: Reply) -> list[int]:
    uids: list[int] = []
    for line in untagged(reply):
        if isinstance(line, bytearray):
            continue
        uids += [int(token) for token in line.split() if token.isdigit()]
    return sorted(set(uids))


def uid_set(uids: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1:3,7``."""
    ordered = sorted(set(uids))
    if not ordered or ordered[0] < 1:
        raise ValueError("UIDs are positive integers")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in [*ordered[1:], 0]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    return ",".join(parts)


def response_code(text: str | None) -> str | None:
    """``AUTHENTICATIONFAILED`` from ``[AUTHENTICATIONFAILED] Authentication failed.``"""
    match = _RESPONSE_CODE_RE.match(text or "")
    return match.group(1).upper() if match else None


_FETCH_START_RE = re.compile(rb"^\d+ FETCH \(", re.I)
_SECTION_RE = re.compile(rb"(BODY\[[^\]]*\](?:<\d+>)?|RFC822(?:\.HEADER|\.TEXT)?)\s*\{\d+\}\s*$", re.I)


class FetchItem:
    """One message of a FETCH reply: its UID, RFC822.SIZE and the sections (``BODY[]``, ``BODY[1]<0>``...)."""

    __slots__ = ("sections", "size", "uid")

    def __init__(self, uid: int | None, size: int | None, sections: dict[str, bytes]) -> None:
        self.uid = uid
        self.size = size
        self.sections = sections


def parse_fetch(lines: Sequence[bytes | bytearray]) -> list[FetchItem]:
    """Items of an untagged FETCH reply as aioimaplib splits it.

    Each message starts with ``n FETCH (`` and continues over plain lines; a segment ending in ``{n}``
    is followed by the literal (a ``bytearray``) of the section it names. UID and RFC822.SIZE may come
    before or after the literals (servers differ), so they are read from all plain segments together.
    """
    items: list[FetchItem] = []
    meta = b""
    sections: dict[str, bytes] = {}
    pending: str | None = None
    started = False

    def finish() -> None:
        if started:
            items.append(FetchItem(number(rb"\bUID (\d+)", meta), number(rb"RFC822\.SIZE (\d+)", meta), dict(sections)))

    for line in lines:
        if isinstance(line, bytearray):
            if pending is not None:
                sections[pending] = bytes(line)
                pending = None
            continue
        if _FETCH_START_RE.match(line):
            finish()
            started, meta, sections, pending = True, b"", {}, None
        meta += b" " + line
        match = _SECTION_RE.search(line)
        if match:
            pending = match.group(1).decode("ascii").upper().replace("BODY.PEEK", "BODY")
    finish()
    return items
