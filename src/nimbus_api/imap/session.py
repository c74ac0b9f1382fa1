"""An open, logged-in IMAP session and its commands (folders, STATUS, search, fetch, delete, wait).

* **Modes.** ``ssl``: TLS from the first byte. ``starttls``: STARTTLS is required; a server that does
  not offer it, or refuses it, ends the session before LOGIN (``imap.starttls_unsupported``), never a
  silent fall-back to cleartext. ``none``: cleartext, and LOGIN is refused on our side
  (``imap.plaintext_auth_refused``) unless ``allow_plaintext_auth``; the check runs before the
  password is revealed, so a refused session never carried it.
* **Timeouts.** The greeting and every command are bounded by ``command_timeout``. A waiting command
  also fails at once when the server closes the connection or sends something the parser cannot use.
  After a timeout or protocol failure the session is unusable (aioimaplib would still wait for the
  lost reply) and says so (``usable``).
* **Closing.** ``imap_session`` logs out and closes on normal exit and on errors (LOGOUT bounded by a
  short timeout), and aborts the transport at once on cancellation.
* **Secrets.** ``Secret.reveal()`` is called once, for LOGIN; the server's reply to LOGIN is redacted
  with it before it reaches an ``ImapError``. Only LOGIN carries the password, so later replies cannot
  echo it. aioimaplib exception texts (which can quote the pending LOGIN command) are never passed on
  nor left for asyncio's logger.
* **XOAUTH2.** With ``auth_mechanism="oauth2"`` the password is an OAuth access token: ``imap.oauth``.
* **Later polling.** ``status``/``select`` return ``uidvalidity`` and ``uidnext``; a poller keeps both,
  and asks ``uids_from(last_uidnext)`` while ``uidvalidity`` is unchanged (a new UIDVALIDITY means the
  stored UIDs are void and the folder must be re-read).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import re
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import date
from email.message import EmailMessage
from typing import TypeVar

import aioimaplib

from nimbus_api.imap.connection import PinnedProtocol, connect, connect_error
from nimbus_api.imap.errors import (
    AUTH_FAILED,
    FOLDER_NOT_FOUND,
    PLAINTEXT_AUTH_REFUSED,
    PROTOCOL_ERROR,
    STARTTLS_UNSUPPORTED,
    TIMEOUT,
    TLS_HANDSHAKE_FAILED,
    ImapError,
    server_text,
)
from nimbus_api.imap.names import encode_folder_name, special_use
from nimbus_api.imap.oauth import authenticate_oauth
from nimbus_api.imap.responses import (
    CAPABILITY_RE,
    CONTROL_RE,
    HEADER_NAME_RE,
    FetchItem,
    Reply,
    number,
    parse_fetch,
    parse_list,
    response_code,
    search_uids,
    tagged_text,
    uid_set,
    untagged,
)
from nimbus_api.imap.types import Folder, FolderStatus, ImapServer
from nimbus_api.kit.net import NetContext

LOGOUT_TIMEOUT = 5.0
CLOSE_WAIT = 1.0

T = TypeVar("T")


class ImapSession:
    """An open, logged-in IMAP connection. Get one from ``imap_session``.

    Folder names are decoded ``str`` everywhere. Commands that work on messages (``search_header``,
    ``uids_from``, ``fetch_headers``, ``delete``) act on the selected folder.
    """

    def __init__(self, server: ImapServer, net: NetContext, protocol: PinnedProtocol) -> None:
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
    def server(self) -> ImapServer:
        return self._server

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
        session = cls(server, net, await connect(server, net))
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
        reply: Reply = await self._step(self._p.starttls(), "STARTTLS")
        if reply.result != "OK":
            raise ImapError(
                STARTTLS_UNSUPPORTED,
                f"{where} refused STARTTLS",
                server_text=server_text(tagged_text(reply)),
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
            error = connect_error(exc, self._server, timeout, "TLS handshake after STARTTLS")
            if error is None:
                raise
            raise error from exc
        # RFC 3501 6.2.1: capabilities from before TLS are void.
        await self._step(self._p.capability(), "CAPABILITY")

    async def _login(self) -> None:
        if self._p.state == aioimaplib.AUTH:  # PREAUTH greeting: nothing to send
            return
        if self._server.auth_mechanism == "oauth2":
            authenticated = await authenticate_oauth(self._p, self._server, self._step)
            self._p.state = aioimaplib.AUTH
            await self._take_capabilities(authenticated)
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
        if CONTROL_RE.search(username) or CONTROL_RE.search(password):
            raise ImapError(AUTH_FAILED, "the user name or password contains a line break or NUL byte")
        reply: Reply = await self._step(self._p.login(aioimaplib.quoted(username), password), "LOGIN")
        if reply.result != "OK":
            text = server_text(tagged_text(reply), password)
            code = response_code(text)
            data = {"response_code": code} if code else {}
            if code == "PRIVACYREQUIRED":
                raise ImapError(PLAINTEXT_AUTH_REFUSED, f"{where} requires TLS for LOGIN", server_text=text, data=data)
            raise ImapError(AUTH_FAILED, f"{where} rejected the user name or password", server_text=text, data=data)
        del password
        await self._take_capabilities(reply)

    async def _take_capabilities(self, reply: Reply) -> None:
        # Capabilities change with authentication. aioimaplib merges the new list into the old one;
        # take the server's new list as a whole, from the LOGIN reply or by asking.
        for line in reply.lines:
            match = CAPABILITY_RE.search(bytes(line))
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
        reply: Reply = await self._step(self._p.simple_command("LIST", *args), "LIST")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused to list folders", server_text=server_text(tagged_text(reply))
            )
        return parse_list(untagged(reply))

    def special_use(self, folders: Iterable[Folder], flag: str) -> Folder | None:
        """See the module-level ``special_use``."""
        return special_use(folders, flag)

    async def _folder_error(self, folder: str, reply: Reply, verb: str) -> ImapError:
        text = server_text(tagged_text(reply))
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
        reply: Reply = await self._step(
            self._p.select_mailbox(aioimaplib.quoted(encode_folder_name(folder)), readonly), f"{verb} {folder}"
        )
        if reply.result != "OK":
            raise await self._folder_error(folder, reply, "selected")
        self._selected = (folder, readonly)
        text = b"\n".join(bytes(line) for line in reply.lines)
        exists: int | None = None
        for line in untagged(reply):
            match = re.match(rb"^(\d+) EXISTS", bytes(line), re.I)
            if match:
                exists = int(match.group(1))
        uidvalidity = number(rb"\[UIDVALIDITY (\d+)\]", text)
        uidnext = number(rb"\[UIDNEXT (\d+)\]", text)
        if exists is None or uidvalidity is None:
            raise ImapError(PROTOCOL_ERROR, f"the {verb} reply for {folder!r} lacks EXISTS or UIDVALIDITY")
        if uidnext is None:  # optional before IMAP4rev2; STATUS knows it
            reply = await self._step(
                self._p.simple_command("STATUS", aioimaplib.quoted(encode_folder_name(folder)), "(UIDNEXT)"),
                f"STATUS {folder}",
            )
            uidnext = number(rb"UIDNEXT (\d+)", b" ".join(bytes(line) for line in untagged(reply))) or 0
        return FolderStatus(name=folder, exists=exists, uidnext=uidnext, uidvalidity=uidvalidity)

    async def status(self, folder: str) -> FolderStatus:
        """STATUS (MESSAGES UIDNEXT UIDVALIDITY) without selecting."""
        reply: Reply = await self._step(
            self._p.simple_command(
                "STATUS", aioimaplib.quoted(encode_folder_name(folder)), "(MESSAGES UIDNEXT UIDVALIDITY)"
            ),
            f"STATUS {folder}",
        )
        if reply.result != "OK":
            raise await self._folder_error(folder, reply, "queried")
        text = b" ".join(bytes(line) for line in untagged(reply))
        values = [number(rb"MESSAGES (\d+)", text), number(rb"UIDNEXT (\d+)", text)]
        uidvalidity = number(rb"UIDVALIDITY (\d+)", text)
        if values[0] is None or values[1] is None or uidvalidity is None:
            raise ImapError(PROTOCOL_ERROR, f"the STATUS reply for {folder!r} is incomplete")
        return FolderStatus(name=folder, exists=values[0], uidnext=values[1], uidvalidity=uidvalidity)

    # --- messages in the selected folder

    def _require_selected(self, what: str) -> None:
        if self._selected is None:
            raise RuntimeError(f"{what} needs a selected folder: call select() first")

    async def _uid_search(self, *criteria: str) -> list[int]:
        self._require_selected("UID SEARCH")
        reply: Reply = await self._step(self._p.search(*criteria, charset=None, by_uid=True), "UID SEARCH")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused the search", server_text=server_text(tagged_text(reply))
            )
        return search_uids(reply)

    async def search_header(self, header: str, value: str) -> list[int]:
        """UIDs of the messages in the selected folder whose ``header`` contains ``value``."""
        if not HEADER_NAME_RE.fullmatch(header):
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
            if not HEADER_NAME_RE.fullmatch(name):
                raise ValueError(f"not a header field name: {name!r}")
        section = f"HEADER.FIELDS ({' '.join(fields)})" if fields else "HEADER"
        reply: Reply = await self._step(
            self._p.fetch(uid_set(wanted), f"(UID BODY.PEEK[{section}])", by_uid=True), "UID FETCH"
        )
        if reply.result != "OK":
            raise ImapError(PROTOCOL_ERROR, "the server refused FETCH", server_text=server_text(tagged_text(reply)))
        parser = email.parser.BytesHeaderParser(policy=email.policy.default)
        found: dict[int, EmailMessage] = {}
        meta = b""
        literal: bytes | None = None

        def finish() -> None:
            uid = number(rb"\bUID (\d+)", meta)
            if uid is not None and literal is not None:
                found[uid] = parser.parsebytes(literal)

        for line in untagged(reply):
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

    async def unselect(self) -> None:
        """Leave a folder selected read-only (``CLOSE``: after EXAMINE it expunges nothing, RFC 3501 6.4.2).

        A STATUS of the selected folder may be answered from stale state (RFC 3501 6.3.10 advises
        against it): the sync leaves a folder after fetching so the next poll's STATUS is exact.
        """
        if self._selected is None:
            return
        if not self._selected[1]:
            raise RuntimeError("unselect() leaves read-only folders only: CLOSE would expunge a writable one")
        self._selected = None
        await self._step(self._p.close(), "CLOSE")

    async def search_since(self, day: date) -> list[int]:
        """UIDs of the messages in the selected folder whose internal date is on or after ``day``."""
        return await self._uid_search("SINCE", day.strftime("%d-%b-%Y"))

    async def _fetch(self, uids: str, items: str) -> list[FetchItem]:
        self._require_selected("UID FETCH")
        reply: Reply = await self._step(self._p.fetch(uids, items, by_uid=True), "UID FETCH")
        if reply.result != "OK":
            raise ImapError(PROTOCOL_ERROR, "the server refused FETCH", server_text=server_text(tagged_text(reply)))
        return [item for item in parse_fetch(untagged(reply)) if item.uid is not None]

    async def sizes_from(self, uid: int) -> dict[int, int]:
        """``{uid: RFC822.SIZE}`` of the messages with UID >= ``uid`` in the selected folder."""
        if uid < 1:
            raise ValueError("UIDs start at 1")
        # "n:*" always matches the highest UID, even below n: filter.
        items = await self._fetch(f"{uid}:*", "(UID RFC822.SIZE)")
        return {item.uid: item.size or 0 for item in items if item.uid is not None and item.uid >= uid}

    async def sizes_of(self, uids: Iterable[int]) -> dict[int, int]:
        wanted = list(uids)
        if not wanted:
            return {}
        items = await self._fetch(uid_set(wanted), "(UID RFC822.SIZE)")
        return {item.uid: item.size or 0 for item in items if item.uid is not None}

    async def fetch_raw(self, uids: Iterable[int]) -> dict[int, bytes]:
        """The whole messages (``BODY.PEEK[]``: the ``\\Seen`` flag is not set), by UID."""
        wanted = list(uids)
        if not wanted:
            return {}
        items = await self._fetch(uid_set(wanted), "(UID BODY.PEEK[])")
        return {item.uid: item.sections.get("BODY[]", b"") for item in items if item.uid is not None}

    async def fetch_head(self, uids: Iterable[int], part_limit: int) -> dict[int, tuple[bytes, bytes, bytes]]:
        """``(header, first part's MIME header, first part's first part_limit bytes)`` by UID, unseen.

        For messages too big to read whole. For a single-part message the "first part's MIME header"
        is the message header again (RFC 3501 6.4.5): callers tell the two cases apart by Content-Type.
        """
        wanted = list(uids)
        if not wanted:
            return {}
        items = await self._fetch(
            uid_set(wanted), f"(UID BODY.PEEK[HEADER] BODY.PEEK[1.MIME] BODY.PEEK[1]<0.{int(part_limit)}>)"
        )
        out: dict[int, tuple[bytes, bytes, bytes]] = {}
        for item in items:
            if item.uid is None:
                continue
            body = next((v for k, v in item.sections.items() if k.startswith("BODY[1]")), b"")
            out[item.uid] = (item.sections.get("BODY[HEADER]", b""), item.sections.get("BODY[1.MIME]", b""), body)
        return out

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
        reply: Reply = await self._step(self._p.uid("STORE", uidset, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused to flag the message", server_text=server_text(tagged_text(reply))
            )
        if "UIDPLUS" in self.capabilities:
            reply = await self._step(self._p.uid("EXPUNGE", uidset), "UID EXPUNGE")
        else:
            reply = await self._step(self._p.expunge(), "EXPUNGE")
        if reply.result != "OK":
            raise ImapError(
                PROTOCOL_ERROR, "the server refused to expunge", server_text=server_text(tagged_text(reply))
            )

    def _require_writable(self, what: str) -> None:
        if self._selected is None or self._selected[1]:
            raise RuntimeError(f"{what} needs a folder selected read-write: call select(folder) first")

    async def _checked(self, aw: Awaitable[Reply], what: str, refused: str) -> Reply:
        reply: Reply = await self._step(aw, what)
        if reply.result != "OK":
            raise ImapError(PROTOCOL_ERROR, refused, server_text=server_text(tagged_text(reply)))
        return reply

    async def add_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        """UID STORE +FLAGS.SILENT (``flags``) in the folder selected read-write (``\\Seen``, ``\\Flagged``)."""
        self._require_writable("UID STORE")
        if not uids or not flags:
            return
        for flag in flags:
            if not re.fullmatch(r"\\?[A-Za-z$][A-Za-z0-9$_-]*", flag):
                raise ValueError(f"not a flag: {flag!r}")
        await self._checked(
            self._p.uid("STORE", uid_set(uids), "+FLAGS.SILENT", f"({' '.join(flags)})"),
            "UID STORE",
            "the server refused to set the flags",
        )

    async def move(self, uids: Sequence[int], folder: str, *, use_move: bool = True) -> str:
        """Move ``uids`` of the folder selected read-write into ``folder``; flags go with them.

        UID MOVE (RFC 6851) when the server offers MOVE (and ``use_move``); otherwise UID COPY, then
        ``\\Deleted`` and UID EXPUNGE of those UIDs (``delete``: a plain EXPUNGE without UIDPLUS). Returns the
        way taken: ``"move"`` or ``"copy"``. UIDs no longer in the folder are skipped by the server.
        """
        self._require_writable("UID MOVE")
        if not uids:
            return "move"
        target = aioimaplib.quoted(encode_folder_name(folder))
        if use_move and "MOVE" in self.capabilities:
            await self._checked(self._p.uid("MOVE", uid_set(uids), target), "UID MOVE", "the server refused MOVE")
            return "move"
        await self._checked(self._p.uid("COPY", uid_set(uids), target), "UID COPY", "the server refused COPY")
        await self.delete(uids)
        return "copy"


async def open_session(server: ImapServer, net: NetContext) -> ImapSession:
    """Connect and LOGIN, for a connection the caller keeps (the sync): close it with ``aclose()``."""
    return await ImapSession._open(server, net)


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
