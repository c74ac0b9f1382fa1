"""The IMAP adapter's value types: where to log in, folders, folder status, a found message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.sasl import AUTH_KINDS, AuthKind

Mode = Literal["ssl", "starttls", "none"]
MODES: tuple[Mode, ...] = ("ssl", "starttls", "none")


@dataclass(frozen=True)
class ImapServer:
    """Where and how to log in. ``password`` stays a ``Secret`` until LOGIN.

    ``auth_mechanism="oauth2"``: ``password`` is an OAuth access token, sent with AUTHENTICATE XOAUTH2
    (or OAUTHBEARER when only that is offered), over TLS only (``ImapSession._login``)."""

    host: str
    port: int
    mode: Mode
    username: str
    password: Secret
    folder: str = "INBOX"
    allow_plaintext_auth: bool = False
    auth_mechanism: AuthKind = "password"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.auth_mechanism not in AUTH_KINDS:
            raise ValueError(f"auth_mechanism must be one of {', '.join(AUTH_KINDS)}, not {self.auth_mechanism!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")


@dataclass
class Folder:
    """A mailbox as LIST shows it; ``name`` is decoded from modified UTF-7."""

    name: str
    flags: list[str]
    delimiter: str | None = None

    @property
    def selectable(self) -> bool:
        lowered = {flag.lower() for flag in self.flags}
        return not lowered & {"\\noselect", "\\nonexistent"}

    def has_flag(self, flag: str) -> bool:
        return flag.lower() in {f.lower() for f in self.flags}


@dataclass
class FolderStatus:
    name: str
    exists: int
    uidnext: int
    uidvalidity: int


@dataclass(frozen=True)
class FoundMessage:
    """Where the message turned up, its UID there, and seconds since the search began.

    ``junk`` is true when the folder is the account's junk/spam folder; ``uids`` lists every copy found
    in that folder (normally one). ``raw`` is the whole message as received, when the caller asked for it
    (``find_message(..., capture=max_bytes)``).
    """

    folder: str
    uid: int
    seconds: float
    junk: bool = False
    uids: tuple[int, ...] = field(default=())
    raw: bytes | None = None
