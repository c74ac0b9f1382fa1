"""Connecting to a user-supplied IMAP server: egress policy, pinned address, TLS, and the protocol object.

* **Pinning.** ``resolve_target`` checks the host against the egress policy and returns the one
  address that passed; ``open_socket`` connects to exactly that address. The TCP socket is handed to
  ``loop.create_connection(sock=..., ssl=..., server_hostname=server.host)``, so TLS verifies the
  certificate against the name the user typed while the bytes go to the address we checked: no second
  DNS lookup, no rebinding window. aioimaplib 2.0.3 resolves and connects inside ``IMAP4.__init__``
  (``create_connection(host, port, ssl=ctx)``) and has no ``sock=``/``server_hostname``; we therefore
  use only its ``IMAP4ClientProtocol`` (parser and command state machine), through the small subclass
  ``PinnedProtocol``, and not its ``IMAP4`` facade.
* **STARTTLS.** 2.0.3 has none: ``PinnedProtocol.upgrade`` runs ``loop.start_tls`` with the shared
  context; cleartext bytes after the tagged OK are treated as an injection (see the class).
* **Timeouts.** DNS, TCP connect and TLS handshakes are bounded by ``connect_timeout``; a failed open
  closes its socket.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import aioimaplib

from nimbus_api.imap.errors import CONNECTION_REFUSED, TIMEOUT, TLS_CERTIFICATE_INVALID, TLS_HANDSHAKE_FAILED, ImapError
from nimbus_api.imap.types import ImapServer
from nimbus_api.kit.egress import EgressError, open_socket, resolve_target
from nimbus_api.kit.net import NetContext


@dataclass(frozen=True)
class Failure:
    reason: str
    raw: bytes | None = None


class PinnedProtocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
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
        self.failed: asyncio.Future[Failure] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.injected = False
        self._starttls_tag: bytes | None = None
        self._switching = False

    # --- failure tracking

    def fail(self, failure: Failure) -> None:
        if not self.failed.done():
            self.failed.set_result(failure)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.fail(Failure("the server closed the connection"))
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
            self.fail(Failure(f"unparsable response ({type(exc).__name__})"))
            if self.transport is not None:
                self.transport.abort()

    async def welcome(self, command: bytes) -> None:
        if not re.match(rb"\* (OK|PREAUTH)\b", command, re.I):
            self.fail(Failure("the server refused the session", command))
            return
        try:
            await super().welcome(command)
        except Exception:
            self.fail(Failure("the server's greeting is not IMAP4rev1", command))

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


def connect_error(exc: BaseException, server: ImapServer, timeout: float, phase: str) -> ImapError | None:
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


async def connect(server: ImapServer, net: NetContext) -> PinnedProtocol:
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
    protocol = PinnedProtocol(loop)
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
        error = connect_error(exc, server, net.connect_timeout, "TLS handshake")
        if error is None:
            raise
        raise error from exc
    return protocol
