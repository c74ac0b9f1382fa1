"""IMAP sessions to user-supplied servers: connect through the egress policy, LOGIN, read folders.

Design
------
* **Pinning.** ``resolve_target`` checks the host against the egress policy and returns the one
  address that passed; ``open_socket`` connects to exactly that address. The TCP socket is handed to
  ``loop.create_connection(sock=..., ssl=..., server_hostname=server.host)``, so TLS verifies the
  certificate against the name the user typed while the bytes go to the address we checked: no second
  DNS lookup, no rebinding window. aioimaplib 2.0.3 resolves and connects inside ``IMAP4.__init__``
  (``create_connection(host, port, ssl=ctx)``) and has no ``sock=``/``server_hostname``; we therefore
  use only its ``IMAP4ClientProtocol`` (parser and command state machine), through the small subclass
  ``_PinnedProtocol``, and not its ``IMAP4`` facade.
* **Modes.** ``ssl``: TLS from the first byte. ``starttls``: STARTTLS is required; a server that does
  not offer it, or refuses it, ends the session before LOGIN (``imap.starttls_unsupported``), never a
  silent fall-back to cleartext. ``none``: cleartext, and LOGIN is refused on our side
  (``imap.plaintext_auth_refused``) unless ``allow_plaintext_auth``; the check runs before the
  password is revealed, so a refused session never carried it.
* **Timeouts.** DNS, TCP connect and TLS handshakes are bounded by ``connect_timeout``; the greeting and
  every command by ``command_timeout``. A waiting command also fails at once when the server closes the
  connection or sends something the parser cannot use. After a timeout or protocol failure the session
  is unusable (aioimaplib would still wait for the lost reply) and says so.
* **Closing.** ``imap_session`` logs out and closes on normal exit and on errors (LOGOUT bounded by a
  short timeout), and aborts the transport at once on cancellation. A failed open closes its socket.
* **Secrets.** ``Secret.reveal()`` is called once, for LOGIN; the server's reply to LOGIN is redacted
  with it before it reaches an ``ImapError``. Only LOGIN carries the password, so later replies cannot
  echo it. aioimaplib exception texts (which can quote the pending LOGIN command) are never passed on
  nor left for asyncio's logger.
* **Folders.** Names travel in modified UTF-7 (RFC 3501 5.1.3) and are decoded to ``str`` here
  (``Entw&APw-rfe`` is ``Entwürfe``); callers always use decoded names. Special-use folders come from
  the server's flags (RFC 6154, ``LIST ... RETURN (SPECIAL-USE)`` when offered) and, failing that, from
  well-known names in several languages.
* **Finding a message.** ``find_message`` polls with backoff (0.2 s, x1.5, at most 2 s) in one session,
  re-``EXAMINE``-ing each folder and running ``UID SEARCH HEADER``. IDLE is not used: it watches one
  mailbox per connection, and the test message may land in INBOX or in Junk; polling two folders over
  one connection is simpler than two IDLE connections and on time within the backoff cap.
* **Later polling.** ``status``/``select`` return ``uidvalidity`` and ``uidnext``; a poller keeps both,
  and asks ``uids_from(last_uidnext)`` while ``uidvalidity`` is unchanged (a new UIDVALIDITY means the
  stored UIDs are void and the folder must be re-read).
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal, Protocol, TypeVar

import aioimaplib

from nimbus_api.imap.errors import (
    AUTH_FAILED,
    CONNECTION_REFUSED,
    FOLDER_NOT_FOUND,
    PLAINTEXT_AUTH_REFUSED,
    PROTOCOL_ERROR,
    STARTTLS_UNSUPPORTED,
    TIMEOUT,
    TLS_CERTIFICATE_INVALID,
    TLS_HANDSHAKE_FAILED,
    ImapError,
    server_text,
)
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.egress import EgressError, open_socket, resolve_target
from nimbus_api.kit.net import NetContext

Mode = Literal["ssl", "starttls", "none"]
MODES: tuple[Mode, ...] = ("ssl", "starttls", "none")

POLL_FIRST_DELAY = 0.2
POLL_FACTOR = 1.5
POLL_MAX_DELAY = 2.0
LOGOUT_TIMEOUT = 5.0
CLOSE_WAIT = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class ImapServer:
    """Where and how to log in. ``password`` stays a ``Secret`` until LOGIN."""

    host: str
    port: int
    mode: Mode
    username: str
    password: Secret
    folder: str = "INBOX"
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
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
    in that folder (normally one).
    """

    folder: str
    uid: int
    seconds: float
    junk: bool = False
    uids: tuple[int, ...] = field(default=())


# --------------------------------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 section 5.1.3)


def decode_folder_name(raw: str) -> str:
    """``Entw&APw-rfe`` -> ``Entwürfe``. Malformed input is returned unchanged (some servers send UTF-8)."""
    if "&" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = raw.find("-", i + 1)
        if end == -1:
            return raw
        chunk = raw[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                out.append(base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True).decode("utf-16-be"))
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                return raw
        i = end + 1
    return "".join(out)


def encode_folder_name(name: str) -> str:
    """``Entwürfe`` -> ``Entw&APw-rfe``: printable ASCII stays, ``&`` becomes ``&-``, the rest is base64."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Special-use folders (RFC 6154) and the names providers give them without flags

SPECIAL_USE_NAMES: dict[str, tuple[str, ...]] = {
    "\\junk": (
        "junk", "spam", "junk e-mail", "junk email", "junk mail", "junk-e-mail", "bulk mail", "bulk",
        "spam-ordner", "spamverdacht", "unerwünscht", "courrier indésirable", "pourriel",
        "correo no deseado", "posta indesiderata", "ongewenste e-mail", "skräppost", "roskaposti",
        "nevyžádaná pošta", "wiadomości-śmieci", "lixo eletrônico", "spam folder",
    ),
    "\\sent": (
        "sent", "sent items", "sent messages", "sent mail", "gesendet", "gesendete elemente",
        "gesendete objekte", "envoyés", "éléments envoyés", "messages envoyés", "enviados",
        "elementos enviados", "posta inviata", "inviata", "verzonden items", "verzonden", "skickat",
        "skickade objekt",
    ),
    "\\drafts": ("drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten", "utkast"),
    "\\trash": (
        "trash", "deleted items", "deleted messages", "bin", "papierkorb", "gelöschte elemente",
        "gelöschte objekte", "corbeille", "éléments supprimés", "papelera", "elementos eliminados",
        "cestino", "posta eliminata", "prullenbak", "verwijderde items", "papperskorgen",
    ),
    "\\archive": ("archive", "archiv", "archives", "archivo", "archivio", "archief", "arkiv"),
    "\\all": ("all mail", "alle nachrichten", "tous les messages", "todos"),
}  # fmt: skip


def special_use(folders: Iterable[Folder], flag: str) -> Folder | None:
    """The folder serving ``flag`` (``\\Junk``, ``\\Sent``, ...): by the server's flag, else by name.

    Names are compared case-insensitively, whole (``[Gmail]/Spam``, ``INBOX.Junk``) and by their last
    component, in the order of ``SPECIAL_USE_NAMES`` (so ``Junk`` wins over ``Bulk``).
    """
    candidates = [f for f in folders if f.selectable]
    for folder in candidates:
        if folder.has_flag(flag):
            return folder
    names = SPECIAL_USE_NAMES.get(flag.lower(), ())
    for wanted in names:
        for folder in candidates:
            if folder.name.casefold() == wanted:
                return folder
    for wanted in names:
        for folder in candidates:
            leaf = folder.name.rsplit(folder.delimiter, 1)[-1] if folder.delimiter else folder.name
            if leaf.casefold() == wanted:
                return folder
    return None


# --------------------------------------------------------------------------------------------------
# Response parsing (aioimaplib gives untagged lines without "* NAME ", literals as bytearray)


class _Reply(Protocol):
    """aioimaplib's ``Response``: result ``OK``/``NO``/``BAD``; the last line is the tagged text."""

    @property
    def result(self) -> str: ...

    @property
    def lines(self) -> list[bytes]: ...


_LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\)\s+(?P<delim>NIL|"(?:[^"\\]|\\.)*")\s+(?P<name>.*)$', re.I | re.S)
_LITERAL_RE = re.compile(rb"^\{(\d+)\+?\}$")
_RESPONSE_CODE_RE = re.compile(r"^\[([A-Za-z-]+)")
_HEADER_NAME_RE = re.compile(r"[!-9;-~]+")
_CONTROL_RE = re.compile(r"[\x00\r\n]")
_CAPABILITY_RE = re.compile(rb"CAPABILITY ([^\]\r\n]*)", re.I)


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


def _untagged(reply: _Reply) -> list[bytes]:
    return list(reply.lines[:-1])


def _tagged_text(reply: _Reply) -> bytes:
    return bytes(reply.lines[-1]) if reply.lines else b""


def _number(pattern: bytes, text: bytes) -> int | None:
    match = re.search(pattern, text, re.I)
    return int(match.group(1)) if match else None


def _search_uids(reply: _Reply) -> list[int]:
    uids: list[int] = []
    for line in _untagged(reply):
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


# --------------------------------------------------------------------------------------------------
# The protocol: aioimaplib's, on our socket


@dataclass(frozen=True)
class _Failure:
    reason: str
    raw: bytes | None = None


class _PinnedProtocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, driven on a transport we create (``sock=`` + ``server_hostname``).

    aioimaplib 2.0.3's ``IMAP4.create_client`` calls ``loop.create_connection(lambda: protocol, host,
    port, ssl=ctx)`` from the constructor: it would resolve the host again (after our policy check) and
    takes neither ``sock=`` nor ``server_hostname``. ``IMAP4ClientProtocol`` itself only needs a
    transport, so the session calls ``create_connection(lambda: protocol, sock=pinned_socket, ssl=ctx,
    server_hostname=host)`` and drives the protocol's coroutines directly; ``IMAP4`` (``wait_for``
    wrappers) is not used. This subclass adds only:

    * ``starttls``/``upgrade``: 2.0.3 has no STARTTLS. ``loop.start_tls`` with the shared context and
      the original host name; bytes that arrive after the tagged STARTTLS reply and before the
      handshake are dropped and flagged (``injected``), as they would be a cleartext injection.
    * ``select_mailbox``: SELECT or EXAMINE with the state RFC 3501 gives (a failed SELECT deselects;
      aioimaplib never enters SELECTED after EXAMINE and stays SELECTED after a failed SELECT).
    * ``failed``/``closed`` futures: set on connection loss, an unusable greeting, or a parser error,
      so a waiting command fails at once instead of hanging until its timeout.
    * parser exceptions are caught in ``data_received``: aioimaplib's ``Abort`` texts may quote the
      pending command (LOGIN with the password) and would otherwise reach asyncio's error log.
    """

    # Attributes of the (untyped) base class that this subclass uses.
    transport: Any
    loop: asyncio.AbstractEventLoop
    state: str
    capabilities: set[str]
    incomplete_line: bytes

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.failed: asyncio.Future[_Failure] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.injected = False
        self._starttls_tag: bytes | None = None
        self._switching = False

    # --- failure tracking

    def fail(self, failure: _Failure) -> None:
        if not self.failed.done():
            self.failed.set_result(failure)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.fail(_Failure("the server closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, d: bytes) -> None:
        if self._switching:
            self.injected = True
            return
        if self._starttls_tag is not None:
            d = self._cut_after_starttls_reply(d)
        try:
            super().data_received(d)
        except Exception as exc:
            self.fail(_Failure(f"unparsable response ({type(exc).__name__})"))
            if self.transport is not None:
                self.transport.abort()

    async def welcome(self, command: bytes) -> None:
        if not re.match(rb"\* (OK|PREAUTH)\b", command, re.I):
            self.fail(_Failure("the server refused the session", command))
            return
        try:
            await super().welcome(command)
        except Exception:
            self.fail(_Failure("the server's greeting is not IMAP4rev1", command))

    # --- STARTTLS

    async def starttls(self) -> Any:
        command = aioimaplib.Command("STARTTLS", self.new_tag(), loop=self.loop)
        self._starttls_tag = command.tag.encode() + b" "
        return await self.execute(command)

    def _cut_after_starttls_reply(self, data: bytes) -> bytes:
        assert self._starttls_tag is not None
        prefix = self.incomplete_line
        combined = prefix + data
        start = 0
        while True:
            end = combined.find(b"\r\n", start)
            if end == -1:
                return data
            if combined.startswith(self._starttls_tag, start):
                accepted = combined[start + len(self._starttls_tag) :].upper().startswith(b"OK")
                self._starttls_tag = None
                if not accepted:  # NO/BAD: the connection stays in cleartext, nothing to guard
                    return data
                keep = end + 2 - len(prefix)
                if len(data) > keep:
                    self.injected = True
                self._switching = True
                return data[:keep]
            start = end + 2

    async def upgrade(self, context: ssl.SSLContext, server_hostname: str, handshake_timeout: float) -> None:
        # start_tls swaps the transport's protocol before its first await: from here on, raw bytes go
        # to the TLS layer, never to the IMAP parser.
        self._switching = False
        self._starttls_tag = None
        transport = await self.loop.start_tls(
            self.transport,
            self,
            context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=handshake_timeout,
        )
        if transport is None:  # pragma: no cover - only with an already closing transport
            raise ConnectionResetError("connection closed before the TLS handshake")
        self.transport = transport

    # --- SELECT / EXAMINE

    async def select_mailbox(self, wire_name: str, readonly: bool) -> Any:
        async with self.state_condition:
            response = await self.execute(
                aioimaplib.Command("EXAMINE" if readonly else "SELECT", self.new_tag(), wire_name, loop=self.loop)
            )
            self.state = aioimaplib.SELECTED if response.result == "OK" else aioimaplib.AUTH
            self.state_condition.notify_all()
        return response


# --------------------------------------------------------------------------------------------------
# Connecting


def _connect_error(exc: BaseException, server: ImapServer, timeout: float, phase: str) -> ImapError | None:
    """The ``ImapError`` for a failure while connecting/handshaking, or None to let it propagate."""
    where = f"{server.host}:{server.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "verification failed"
        return ImapError(TLS_CERTIFICATE_INVALID, f"the TLS certificate of {where} is not valid: {reason}")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        return ImapError(TLS_HANDSHAKE_FAILED, f"TLS handshake with {where} failed ({reason})")
    if isinstance(exc, TimeoutError) or (isinstance(exc, ConnectionAbortedError) and "taking longer" in str(exc)):
        return ImapError(TIMEOUT, f"{phase} with {where} did not complete within {timeout:g} s")
    if isinstance(exc, OSError):
        return ImapError(TLS_HANDSHAKE_FAILED, f"connection to {where} closed during the {phase}")
    return None


async def _connect(server: ImapServer, net: NetContext) -> _PinnedProtocol:
    """Policy check, pinned TCP connect and (mode ``ssl``) TLS handshake; returns the live protocol."""
    where = f"{server.host}:{server.port}"
    dns_budget = 2 * float(net.resolver.lifetime) + 1.0
    try:
        async with asyncio.timeout(dns_budget):
            target = await resolve_target(net.policy, net.resolver, server.host, server.port)
    except EgressError as exc:
        raise ImapError(f"imap.{exc.code_suffix}", str(exc)) from None
    except TimeoutError:
        raise ImapError("imap.host_unresolvable", f"{server.host} did not resolve (DNS timed out)") from None

    try:
        sock: socket.socket = await open_socket(target, net.connect_timeout)
    except TimeoutError:
        raise ImapError(TIMEOUT, f"no TCP connection to {where} within {net.connect_timeout:g} s") from None
    except ConnectionRefusedError:
        raise ImapError(CONNECTION_REFUSED, f"{where} refused the connection (nothing listens there)") from None
    except OSError as exc:
        raise ImapError(CONNECTION_REFUSED, f"cannot connect to {where}: {exc.strerror or exc}") from None

    loop = asyncio.get_running_loop()
    protocol = _PinnedProtocol(loop)
    tls = net.tls if server.mode == "ssl" else None
    try:
        async with asyncio.timeout(net.connect_timeout):
            await loop.create_connection(
                lambda: protocol,
                sock=sock,
                ssl=tls,
                server_hostname=server.host if tls is not None else None,
                ssl_handshake_timeout=net.connect_timeout + 5 if tls is not None else None,
            )
    except BaseException as exc:
        sock.close()
        error = _connect_error(exc, server, net.connect_timeout, "TLS handshake")
        if error is None:
            raise
        raise error from exc
    return protocol


# --------------------------------------------------------------------------------------------------
# The session


class ImapSession:
    """An open, logged-in IMAP connection. Get one from ``imap_session``.

    Folder names are decoded ``str`` everywhere. Commands that work on messages (``search_header``,
    ``uids_from``, ``fetch_headers``, ``delete``) act on the selected folder.
    """

    def __init__(self, server: ImapServer, net: NetContext, protocol: _PinnedProtocol) -> None:
        self._server = server
        self._net = net
        self._p = protocol
        self._broken = False
        self._closed = False
        self._selected: tuple[str, bool] | None = None

    # --- public state

    @property
    def capabilities(self) -> set[str]:
        return {str(c).upper() for c in self._p.capabilities}

    @property
    def selected(self) -> str | None:
        """The selected folder's name, or None."""
        return self._selected[0] if self._selected else None

    @property
    def usable(self) -> bool:
        return not (self._broken or self._closed or self._p.failed.done())

    # --- guarded steps

    async def _step(self, aw: Awaitable[T], what: str, *, timeout: float | None = None) -> T:
        """Await one protocol step, bounded by a timeout and by the connection's failure."""
        if not self.usable:
            if isinstance(aw, asyncio.Future | asyncio.Task):
                aw.cancel()
            elif hasattr(aw, "close"):
                aw.close()
            raise ImapError(PROTOCOL_ERROR, f"the IMAP session is no longer usable; cannot run {what}")
        limit = self._net.command_timeout if timeout is None else timeout
        task = asyncio.ensure_future(aw)
        try:
            await asyncio.wait((task, self._p.failed), timeout=limit, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and self._p.failed.done():
                # A reply and the connection's end can arrive in one read: let the command finish.
                await asyncio.wait((task,), timeout=0.05)
        except BaseException:
            task.cancel()
            self._broken = True
            raise
        if task.done():
            exc = task.exception()
            if exc is None:
                return task.result()
            self._broken = True
            # Never pass aioimaplib's text on: it may quote the pending command (LOGIN).
            raise ImapError(PROTOCOL_ERROR, f"{what} failed in the IMAP client ({type(exc).__name__})") from None
        task.cancel()
        self._broken = True
        if self._p.failed.done():
            failure = self._p.failed.result()
            raise ImapError(
                PROTOCOL_ERROR,
                f"{failure.reason} during {what}",
                server_text=server_text(failure.raw),
            )
        raise ImapError(TIMEOUT, f"{self._server.host} did not answer {what} within {limit:g} s")

    # --- opening

    @classmethod
    async def _open(cls, server: ImapServer, net: NetContext) -> ImapSession:
        session = cls(server, net, await _connect(server, net))
        try:
            await session._greeting()
            if server.mode == "starttls":
                await session._starttls()
            await session._login()
        except BaseException:
            session.abort()
            raise
        return session

    async def _greeting(self) -> None:
        hint = ""
        if self._server.mode != "ssl":
            hint = ' (a port that expects TLS from the first byte, like 993, stays silent: try mode "ssl")'
        try:
            await self._step(self._p.wait("AUTH|NONAUTH"), "the greeting")
        except ImapError as exc:
            if exc.code == TIMEOUT:
                exc.detail += hint
                exc.args = (f"{exc.code}: {exc.detail}",)
            raise

    async def _starttls(self) -> None:
        where = f"{self._server.host}:{self._server.port}"
        if "STARTTLS" not in self.capabilities:
            raise ImapError(
                STARTTLS_UNSUPPORTED,
                f'{where} does not offer STARTTLS; use mode "ssl" on its TLS port (usually 993)',
            )
        reply: _Reply = await self._step(self._p.starttls(), "STARTTLS")
        if reply.result != "OK":
            raise ImapError(
                STARTTLS_UNSUPPORTED,
                f"{where} refused STARTTLS",
                server_text=server_text(_tagged_text(reply)),
            )
        if self._p.injected:
            self._broken = True
            raise ImapError(
                TLS_HANDSHAKE_FAILED,
                f"{where} sent cleartext data after accepting STARTTLS (possible injection); not continuing",
            )
        timeout = self._net.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._p.upgrade(self._net.tls, self._server.host, timeout + 5)
        except Exception as exc:
            self._broken = True
            error = _connect_error(exc, self._server, timeout, "TLS handshake after STARTTLS")
            if error is None:
                raise
            raise error from exc
        # RFC 3501 6.2.1: capabilities from before TLS are void.
        await self._step(self._p.capability(), "CAPABILITY")

    async def _login(self) -> None:
        if self._p.state == aioimaplib.AUTH:  # PREAUTH greeting: nothing to send
            return
        where = f"{self._server.host}:{self._server.port}"
        if self._server.mode == "none" and not self._server.allow_plaintext_auth:
            raise ImapError(
                PLAINTEXT_AUTH_REFUSED,
                f'not sending the password to {where} without TLS; use mode "ssl" or "starttls", '
                "or allow cleartext authentication for this mailbox explicitly",
            )
        if "LOGINDISABLED" in self.capabilities:
            raise ImapError(
                PLAINTEXT_AUTH_REFUSED,
                f'{where} refuses LOGIN on this connection (LOGINDISABLED); use mode "ssl" or "starttls"',
            )
        username = self._server.username
        password = self._server.password.reveal()
        if _CONTROL_RE.search(username) or _CONTROL_RE.search(password):
            raise ImapError(AUTH_FAILED, "the user name or password contains a line break or NUL byte")
        reply: _Reply = await self._step(self._p.login(aioimaplib.quoted(username), password), "LOGIN")
        if reply.result != "OK":
            text = server_text(_tagged_text(reply), password)
            code = response_code(text)
            data = {"response_code": code} if code else {}
            if code == "PRIVACYREQUIRED":
                raise ImapError(PLAINTEXT_AUTH_REFUSED, f"{where} requires TLS for LOGIN", server_text=text, data=data)
            raise ImapError(AUTH_FAILED, f"{where} rejected the user name or password", server_text=text, data=data)
        del password
        # Capabilities change with authentication. aioimaplib merges the new list into the old one;
        # take the server's new list as a whole, from the LOGIN reply or by asking.
        for line in reply.lines:
            match = _CAPABILITY_RE.search(bytes(line))
            if match:
                self._p.capabilities = set(match.group(1).decode("ascii", "replace").split())
                break
        else:
            await self._step(self._p.capability(), "CAPABILITY")

    # --- closing

    def abort(self) -> None:
        """Drop the connection now (no LOGOUT)."""
        self._closed = True
        transport = self._p.transport
        if transport is not None:
            transport.abort()

    async def aclose(self) -> None:
        """LOGOUT (bounded) if the session is healthy, then close; idempotent."""
        if self._closed:
            return
        if self.usable:
            with suppress(ImapError):
                await self._step(self._p.logout(), "LOGOUT", timeout=min(self._net.command_timeout, LOGOUT_TIMEOUT))
        self._closed = True
        transport = self._p.transport
        if transport is None:
            return
        transport.close()
        await asyncio.wait((self._p.closed,), timeout=CLOSE_WAIT)
        if not self._p.closed.done():
            transport.abort()

    # --- folders

    async def list_folders(self) -> list[Folder]:
        args = ['""', '"*"']
        if "SPECIAL-USE" in self.capabilities:
            args += ["RETURN", "(SPECIAL-USE)"]
        reply: _Reply = await self._step(self._p.simple_command("LIST", *args), "LIST")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused to list folders", server_text=server_text(_tagged_text(reply))
            )
        return parse_list(_untagged(reply))

    def special_use(self, folders: Iterable[Folder], flag: str) -> Folder | None:
        """See the module-level ``special_use``."""
        return special_use(folders, flag)

    async def _folder_error(self, folder: str, reply: _Reply, verb: str) -> ImapError:
        text = server_text(_tagged_text(reply))
        names: list[str] = []
        with suppress(ImapError):
            names = [f.name for f in await self.list_folders() if f.selectable]
        exists = folder in names or (folder.upper() == "INBOX" and "INBOX" in names)
        if exists:
            detail = f"folder {folder!r} exists but cannot be {verb}"
        else:
            shown = ", ".join(names) if names else "none"
            detail = f"folder {folder!r} does not exist; the mailbox has: {shown}"
        return ImapError(FOLDER_NOT_FOUND, detail, server_text=text, data={"folders": names})

    async def select(self, folder: str, *, readonly: bool = False) -> FolderStatus:
        """SELECT (or EXAMINE when ``readonly``) ``folder``; ``imap.folder_not_found`` lists the folders."""
        verb = "EXAMINE" if readonly else "SELECT"
        self._selected = None
        reply: _Reply = await self._step(
            self._p.select_mailbox(aioimaplib.quoted(encode_folder_name(folder)), readonly), f"{verb} {folder}"
        )
        if reply.result != "OK":
            raise await self._folder_error(folder, reply, "selected")
        self._selected = (folder, readonly)
        text = b"\n".join(bytes(line) for line in reply.lines)
        exists: int | None = None
        for line in _untagged(reply):
            match = re.match(rb"^(\d+) EXISTS", bytes(line), re.I)
            if match:
                exists = int(match.group(1))
        uidvalidity = _number(rb"\[UIDVALIDITY (\d+)\]", text)
        uidnext = _number(rb"\[UIDNEXT (\d+)\]", text)
        if exists is None or uidvalidity is None:
            raise ImapError(PROTOCOL_ERROR, f"the {verb} reply for {folder!r} lacks EXISTS or UIDVALIDITY")
        if uidnext is None:  # optional before IMAP4rev2; STATUS knows it
            reply = await self._step(
                self._p.simple_command("STATUS", aioimaplib.quoted(encode_folder_name(folder)), "(UIDNEXT)"),
                f"STATUS {folder}",
            )
            uidnext = _number(rb"UIDNEXT (\d+)", b" ".join(bytes(line) for line in _untagged(reply))) or 0
        return FolderStatus(name=folder, exists=exists, uidnext=uidnext, uidvalidity=uidvalidity)

    async def status(self, folder: str) -> FolderStatus:
        """STATUS (MESSAGES UIDNEXT UIDVALIDITY) without selecting."""
        reply: _Reply = await self._step(
            self._p.simple_command(
                "STATUS", aioimaplib.quoted(encode_folder_name(folder)), "(MESSAGES UIDNEXT UIDVALIDITY)"
            ),
            f"STATUS {folder}",
        )
        if reply.result != "OK":
            raise await self._folder_error(folder, reply, "queried")
        text = b" ".join(bytes(line) for line in _untagged(reply))
        values = [_number(rb"MESSAGES (\d+)", text), _number(rb"UIDNEXT (\d+)", text)]
        uidvalidity = _number(rb"UIDVALIDITY (\d+)", text)
        if values[0] is None or values[1] is None or uidvalidity is None:
            raise ImapError(PROTOCOL_ERROR, f"the STATUS reply for {folder!r} is incomplete")
        return FolderStatus(name=folder, exists=values[0], uidnext=values[1], uidvalidity=uidvalidity)

    # --- messages in the selected folder

    def _require_selected(self, what: str) -> None:
        if self._selected is None:
            raise RuntimeError(f"{what} needs a selected folder: call select() first")

    async def _uid_search(self, *criteria: str) -> list[int]:
        self._require_selected("UID SEARCH")
        reply: _Reply = await self._step(self._p.search(*criteria, charset=None, by_uid=True), "UID SEARCH")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused the search", server_text=server_text(_tagged_text(reply))
            )
        return _search_uids(reply)

    async def search_header(self, header: str, value: str) -> list[int]:
        """UIDs of the messages in the selected folder whose ``header`` contains ``value``."""
        if not _HEADER_NAME_RE.fullmatch(header):
            raise ValueError(f"not a header field name: {header!r}")
        if not value.isascii() or not value.isprintable():
            raise ValueError("the searched value must be printable ASCII")
        return await self._uid_search("HEADER", aioimaplib.quoted(header), aioimaplib.quoted(value))

    async def uids_from(self, uid: int) -> list[int]:
        """UIDs >= ``uid`` in the selected folder (pass a stored UIDNEXT to get what arrived since)."""
        if uid < 1:
            raise ValueError("UIDs start at 1")
        # "n:*" always matches the highest UID, even below n: filter.
        return [u for u in await self._uid_search("UID", f"{uid}:*") if u >= uid]

    async def fetch_headers(self, uids: Iterable[int], fields: Sequence[str] = ()) -> dict[int, EmailMessage]:
        """Header blocks (all, or only ``fields``) of ``uids`` in the selected folder, by UID; not marked seen."""
        self._require_selected("UID FETCH")
        wanted = list(uids)
        if not wanted:
            return {}
        for name in fields:
            if not _HEADER_NAME_RE.fullmatch(name):
                raise ValueError(f"not a header field name: {name!r}")
        section = f"HEADER.FIELDS ({' '.join(fields)})" if fields else "HEADER"
        reply: _Reply = await self._step(
            self._p.fetch(uid_set(wanted), f"(UID BODY.PEEK[{section}])", by_uid=True), "UID FETCH"
        )
        if reply.result != "OK":
            raise ImapError(PROTOCOL_ERROR, "the server refused FETCH", server_text=server_text(_tagged_text(reply)))
        parser = email.parser.BytesHeaderParser(policy=email.policy.default)
        found: dict[int, EmailMessage] = {}
        meta = b""
        literal: bytes | None = None

        def finish() -> None:
            uid = _number(rb"\bUID (\d+)", meta)
            if uid is not None and literal is not None:
                found[uid] = parser.parsebytes(literal)

        for line in _untagged(reply):
            if isinstance(line, bytearray):
                literal = bytes(line)
                continue
            if re.match(rb"^\d+ FETCH \(", line, re.I):
                finish()
                meta, literal = line, None
            else:
                meta += b" " + line
        finish()
        return found

    async def delete(self, uids: Sequence[int], *, folder: str | None = None) -> None:
        """Delete ``uids`` from ``folder`` (default: the selected one, re-selected read-write if needed).

        UID STORE +FLAGS.SILENT (\\Deleted), then UID EXPUNGE (UIDPLUS). Without UIDPLUS a plain EXPUNGE
        runs, which also removes messages the user had already marked \\Deleted in that folder.
        """
        if folder is None and self._selected is not None and self._selected[1]:
            folder = self._selected[0]  # selected read-only: re-select read-write
        if folder is not None:
            await self.select(folder)
        self._require_selected("delete")
        if not uids:
            return
        uidset = uid_set(uids)
        reply: _Reply = await self._step(self._p.uid("STORE", uidset, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused to flag the message", server_text=server_text(_tagged_text(reply))
            )
        if "UIDPLUS" in self.capabilities:
            reply = await self._step(self._p.uid("EXPUNGE", uidset), "UID EXPUNGE")
        else:
            reply = await self._step(self._p.expunge(), "EXPUNGE")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused to expunge", server_text=server_text(_tagged_text(reply))
            )

    # --- waiting for a message

    async def default_folders(self, folders: Sequence[Folder] | None = None) -> list[str]:
        """The configured folder plus the junk folder, if the account has one."""
        listed = list(folders) if folders is not None else await self.list_folders()
        names = [self._server.folder]
        junk = special_use(listed, "\\Junk")
        if junk is not None and junk.name not in names:
            names.append(junk.name)
        return names

    async def find_message(
        self,
        *,
        header: str,
        token: str,
        folders: Sequence[str] | None = None,
        timeout: float,
        started: float | None = None,
    ) -> FoundMessage | None:
        """Poll ``folders`` for a message whose ``header`` contains ``token``; None after ``timeout``.

        ``started`` (a ``time.monotonic()`` value) lets the caller count time spent before this call.
        Every folder is checked once more at the deadline. Unknown folders raise
        ``imap.folder_not_found`` before the first poll.
        """
        start = time.monotonic() if started is None else started
        deadline = start + timeout
        listed = await self.list_folders()
        wanted = list(folders) if folders is not None else await self.default_folders(listed)
        names = {f.name for f in listed if f.selectable}
        for name in wanted:
            if name not in names and not (name.upper() == "INBOX" and "INBOX" in names):
                raise ImapError(
                    FOLDER_NOT_FOUND,
                    f"folder {name!r} does not exist; the mailbox has: {', '.join(sorted(names)) or 'none'}",
                    data={"folders": sorted(names)},
                )
        junk = special_use(listed, "\\Junk")
        delay = POLL_FIRST_DELAY
        while True:
            for name in wanted:
                status = await self.select(name, readonly=True)
                if status.exists == 0:
                    continue
                uids = await self.search_header(header, token)
                if uids:
                    return FoundMessage(
                        folder=name,
                        uid=uids[0],
                        seconds=round(time.monotonic() - start, 3),
                        junk=junk is not None and junk.name == name,
                        uids=tuple(uids),
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * POLL_FACTOR, POLL_MAX_DELAY)


@asynccontextmanager
async def imap_session(server: ImapServer, net: NetContext) -> AsyncIterator[ImapSession]:
    """Connect (policy, pinned IP, TLS per mode), LOGIN, yield the session; LOGOUT and close after.

    Raises ``ImapError`` for every failure of the open. The connection is closed on every exit:
    gracefully (bounded LOGOUT) on normal exit and errors, by abort on cancellation.
    """
    session = await ImapSession._open(server, net)
    try:
        yield session
    except asyncio.CancelledError:
        session.abort()
        raise
    finally:
        await session.aclose()


async def find_message(
    server: ImapServer,
    net: NetContext,
    *,
    header: str,
    token: str,
    folders: Sequence[str] | None = None,
    timeout: float,
    delete: bool = False,
) -> FoundMessage | None:
    """Wait up to ``timeout`` s (counted from this call) for the message with ``header: token``.

    One session; ``folders`` default to the configured folder plus the junk folder. Returns where it
    landed and after how long, or None on timeout (the caller decides what that means). With
    ``delete`` the found copies are removed in the same session.
    """
    started = time.monotonic()
    async with imap_session(server, net) as session:
        found = await session.find_message(
            header=header, token=token, folders=folders, timeout=timeout, started=started
        )
        if found is not None and delete:
            await session.delete(list(found.uids), folder=found.folder)
        return found


__all__ = [
    "MODES",
    "Folder",
    "FolderStatus",
    "FoundMessage",
    "ImapServer",
    "ImapSession",
    "Mode",
    "decode_folder_name",
    "encode_folder_name",
    "find_message",
    "imap_session",
    "parse_list",
    "response_code",
    "special_use",
    "uid_set",
]
