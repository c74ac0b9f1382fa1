"""Connections to a user's SMTP server, the way the account says: the reusable half of the adapter.

``connect`` resolves the host through the egress policy, opens TCP to the *pinned* address, does TLS
per mode verified against the *original* host name, EHLO, and AUTH when there are credentials. The
sending engine pools what it returns (``smtp.pool``); ``smtp.transaction`` sends messages on it;
``smtp.client.send_test_message`` is the verification built from both.
Pinning with aiosmtplib 5: ``kit.egress.open_socket`` connects a socket to ``target.ip`` and aiosmtplib
gets it as ``sock=`` with ``hostname=target.host``. With a socket, aiosmtplib never resolves
anything; ``hostname`` is only used as ``server_hostname`` for the implicit-TLS handshake
(``loop.create_connection(sock=..., ssl=ctx, server_hostname=hostname)``) and as the default
``server_hostname`` of ``starttls()``, which we also pass explicitly. So the address that passed the
policy is the address we talk to, and the certificate must be valid for the name the user typed: no
DNS-rebinding window, no verification against a bare IP. The ``SSLContext`` is always ``net.tls``,
shared by the process, and must verify (we refuse a context that does not).

Modes: ``ssl`` is TLS from the first byte; ``starttls`` must upgrade, and a server that does not offer
STARTTLS is an error, never a silent fallback to cleartext; ``none`` stays in cleartext (a STARTTLS
offer only produces a warning). A password is never sent in cleartext unless the account sets
``allow_plaintext_auth``; the check happens before any AUTH command and before the secret is revealed.

XOAUTH2/OAUTHBEARER logins of OAuth accounts: ``smtp.oauth``.

Timeouts: ``net.connect_timeout`` bounds DNS+TCP, the greeting and each TLS handshake;
``net.command_timeout`` bounds each command's reply. On any failure or cancellation the connection is
closed before the exception leaves this module, at once (Python 3.11's ``wait_for`` can swallow a
cancellation: see ``_promptly_cancellable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, TypeVar

import aiosmtplib
from aiosmtplib import (
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.egress import HostNotAllowed, HostUnresolvable, Target, open_socket, resolve_target
from nimbus_api.kit.net import NetContext
from nimbus_api.kit.sasl import AUTH_KINDS, AuthKind
from nimbus_api.smtp.classify import HINTS, auth_failed_hint, classify, reply_hint
from nimbus_api.smtp.errors import (
    STAGE_WORDS,
    ServerReply,
    SmtpError,
    Stage,
    credential_forms,
    parse_reply,
    redact,
)
from nimbus_api.smtp.oauth import authenticate_oauth
from nimbus_api.smtp.pipelining import PipeliningProtocol

if TYPE_CHECKING:
    from nimbus_api.smtp.transaction import Chained

Mode = Literal["ssl", "starttls", "none"]
MODES: tuple[Mode, ...] = ("ssl", "starttls", "none")
AUTH_MECHANISMS = ("plain", "login")  # preference order; CRAM-MD5 is obsolete, XOAUTH2 needs OAuth tokens

T = TypeVar("T")


@dataclass(frozen=True)
class SmtpServer:
    """How to reach and log in to one account's SMTP server. Credentials are used only when both are set.

    ``password_source`` instead of ``password``: the password is fetched only when a connection is opened
    (``connect``), so a sender whose pooled connection is still logged in decrypts nothing (every decrypt
    is audited); the caller's source may cache it for as long as it holds it."""

    host: str
    port: int
    mode: Mode
    username: str | None
    password: Secret | None
    allow_plaintext_auth: bool = False
    password_source: Callable[[], Awaitable[Secret | None]] | None = field(default=None, compare=False, repr=False)
    #: "oauth2": ``password`` is an OAuth access token, sent with OAUTHBEARER or XOAUTH2 (module docstring)
    auth_mechanism: AuthKind = "password"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown SMTP mode {self.mode!r}")
        if self.auth_mechanism not in AUTH_KINDS:
            raise ValueError(f"unknown SMTP auth mechanism {self.auth_mechanism!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"SMTP port {self.port} out of range")

    @property
    def has_credentials(self) -> bool:
        return self.username is not None and (self.password is not None or self.password_source is not None)

    async def with_password(self) -> SmtpServer:
        """This server with its password fetched from ``password_source`` (only when a login needs it)."""
        if self.password is not None or self.password_source is None or self.username is None:
            return self
        return replace(self, password=await self.password_source(), password_source=None)


class SmtpConnection(aiosmtplib.SMTP):
    """An aiosmtplib client on a pinned socket that remembers how it was set up."""

    def __init__(
        self, server: SmtpServer, target: Target, net: NetContext, sock: socket.socket, local_hostname: str
    ) -> None:
        super().__init__(
            hostname=target.host.rstrip("."),  # only ever used as the TLS server_hostname: we pass sock=
            sock=sock,
            use_tls=server.mode == "ssl",
            start_tls=False,  # STARTTLS is done explicitly, so a missing offer is an error, not a fallback
            tls_context=net.tls,
            timeout=net.command_timeout,
            local_hostname=local_hostname,
        )
        self.server = server
        self.target = target
        self.net = net
        self.auth_mechanism: str | None = None
        self.warnings: list[str] = []
        # Every form of the credential we put on the wire, to redact from replies. Filled at AUTH: a server
        # cannot echo a password it was never sent, so replies before AUTH need no redaction.
        self.secret_forms: list[str] = []
        # The next message's envelope, written after the last final dot and answered (``transmit(then=)``):
        # the server waits for that message's content, so the connection is good only for that message.
        self.chained: Chained | None = None

    async def _create_connection(self, timeout: float | None) -> SMTPResponse:
        """aiosmtplib's connection set-up on our pinned socket, with ``PipeliningProtocol`` as the
        protocol (aiosmtplib builds its own here and offers no other way to choose it)."""
        loop = self.loop
        if loop is None or self.sock is None:  # pragma: no cover - connect() sets the loop; we always pass sock
            raise RuntimeError("a pinned socket and a running loop are required")
        protocol = PipeliningProtocol(loop=loop, connection_lost_callback=self._on_connection_lost)
        tls = self.use_tls
        opening = loop.create_connection(
            lambda: protocol,
            sock=self.sock,
            ssl=await self._get_tls_context() if tls else None,
            server_hostname=self.hostname if tls else None,
            ssl_handshake_timeout=timeout if tls else None,
        )
        try:
            transport, _ = await asyncio.wait_for(opening, timeout=timeout)
        except TimeoutError as exc:
            raise SMTPConnectTimeoutError(f"Timed out connecting to {self.hostname} on port {self.port}") from exc
        except OSError as exc:
            raise SMTPConnectError(f"Error connecting to {self.hostname} on port {self.port}: {exc}") from exc
        self.protocol = protocol
        self.transport = transport
        try:
            response = await protocol.read_response(timeout=timeout)
        except SMTPServerDisconnected as exc:
            raise SMTPConnectError(f"Error connecting to {self.hostname} on port {self.port}: {exc}") from exc
        except SMTPTimeoutError as exc:
            raise SMTPConnectTimeoutError("Timed out waiting for server ready message") from exc
        if response.code != 220:
            raise SMTPConnectResponseError(response.code, response.message)
        return response

    @property
    def encrypted(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_extra_info("sslcontext") is not None

    @property
    def tls_version(self) -> str | None:
        transport = self.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        return ssl_object.version() if isinstance(ssl_object, ssl.SSLObject) else None

    def fail(self, code: str, detail: str, stage: Stage, hint: str | None = None) -> SmtpError:
        return SmtpError(code, detail, stage, None, hint if hint is not None else HINTS.get(code))

    def reply_error(self, stage: Stage, code: int, message: str) -> SmtpError:
        """Classify a server reply (redacted first) into an ``SmtpError``."""
        reply = parse_reply(code, message, self.secret_forms)
        our_code = classify(stage, reply.code, reply.enhanced, reply.text, encrypted=self.encrypted)
        hint = reply_hint(reply.text) or self._hint(our_code, stage)
        return SmtpError(our_code, _reply_detail(our_code, stage, reply), stage, reply, hint)

    def _hint(self, code: str, stage: Stage) -> str | None:
        server = self.server
        if code == "smtp.auth_failed":
            if not server.has_credentials:
                return "The server requires a login: set the username and password of the mailbox."
            return auth_failed_hint(server.host)
        if code == "smtp.starttls_required" and server.mode == "none":
            return "The server requires encryption before this step: use mode starttls (or ssl on port 465)."
        if code == "smtp.timeout":
            if stage == "dot":
                return (
                    "The server did not confirm the message in time: it may or may not have been accepted. "
                    "Check the mailbox before retrying."
                )
            if stage == "connect" and server.mode != "ssl" and server.port == 465:
                return "Port 465 expects TLS from the first byte: use mode ssl."
        if code == "smtp.tls_handshake_failed" and server.mode == "ssl":
            return (
                "The server did not start TLS on connect. If it expects STARTTLS (usually ports 587 and 25), "
                "use mode starttls."
            )
        if code == "smtp.relay_denied" and not server.has_credentials:
            return "The server does not relay without a login: set the username and password of the mailbox."
        return HINTS.get(code)

    def translate(self, exc: BaseException, stage: Stage) -> SmtpError | None:
        """The ``SmtpError`` for an exception raised during ``stage``; ``None`` for what is not ours to map."""
        if isinstance(exc, SmtpError):
            return exc
        if isinstance(exc, SMTPResponseException) and exc.code >= 100:
            return self.reply_error(stage, exc.code, exc.message)
        if isinstance(exc, SMTPResponseException):  # aiosmtplib's -1: a line that is not SMTP
            text = redact(exc.message, self.secret_forms)[:200]
            return self.fail("smtp.rejected", f"the answer during {STAGE_WORDS[stage]} is not SMTP: {text}", stage)
        if isinstance(exc, SMTPConnectError) and stage == "connect":
            return self._translate_connect(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self._certificate_error(exc)
        if stage == "tls" and isinstance(exc, ssl.SSLError | ConnectionError):
            return self._handshake_error(exc)
        if isinstance(exc, TimeoutError):  # aiosmtplib's SMTPTimeoutError is a TimeoutError
            seconds = self.net.connect_timeout if stage in ("connect", "tls") else self.net.command_timeout
            return self.fail(
                "smtp.timeout",
                f"no answer within {seconds:g} s during {STAGE_WORDS[stage]}",
                stage,
                self._hint("smtp.timeout", stage),
            )
        if isinstance(exc, ConnectionError | ssl.SSLError):  # SMTPServerDisconnected is a ConnectionError
            if stage == "connect":
                return self.fail(
                    "smtp.connection_refused", "the server closed the connection before its greeting", stage
                )
            return self.fail(
                "smtp.rejected", f"the connection was lost during {STAGE_WORDS[stage]} without a reply", stage
            )
        if isinstance(exc, SMTPException):
            detail = redact(exc.message, self.secret_forms)
            return self.fail("smtp.rejected", f"{STAGE_WORDS[stage]} failed: {detail}", stage)
        return None

    def _translate_connect(self, exc: SMTPConnectError) -> SmtpError:
        """aiosmtplib's ``connect`` covers the implicit-TLS handshake and the greeting: the cause tells which."""
        cause = exc.__cause__
        if isinstance(cause, SMTPException):  # failed at the greeting: TLS (if any) was already up
            return self.translate(cause, "connect") or self.fail("smtp.rejected", str(cause), "connect")
        stage: Stage = "tls" if self.server.mode == "ssl" else "connect"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return self._certificate_error(cause)
        if isinstance(cause, TimeoutError) or isinstance(exc, SMTPTimeoutError):
            return self.translate(TimeoutError(), stage) or self.fail("smtp.timeout", str(exc), stage)
        if stage == "tls":
            return self._handshake_error(cause or exc)
        return self.fail("smtp.connection_refused", f"connection failed: {_reason(cause or exc)}", "connect")

    def _handshake_error(self, exc: BaseException) -> SmtpError:
        return self.fail(
            "smtp.tls_handshake_failed",
            f"TLS negotiation failed: {_reason(exc)}",
            "tls",
            self._hint("smtp.tls_handshake_failed", "tls"),
        )

    def _certificate_error(self, exc: ssl.SSLCertVerificationError) -> SmtpError:
        reason = exc.verify_message or _reason(exc)
        return self.fail(
            "smtp.tls_certificate_invalid",
            f"the server's certificate is not valid for {self.target.host}: {reason}",
            "tls",
        )

    async def step(self, stage: Stage, awaitable: Awaitable[T]) -> T:
        """Await one protocol step; failures leave as ``SmtpError`` with no chained raw exception.

        A cancellation closes the connection at once (see ``_promptly_cancellable``).
        """
        return await self.inner_step(stage, _promptly_cancellable(awaitable, on_cancel=self.close))

    async def inner_step(self, stage: Stage, awaitable: Awaitable[T]) -> T:
        """``step`` without a task of its own: for steps run inside one ``_promptly_cancellable`` task
        that covers several of them (``transmit``: one task per message instead of one per command)."""
        try:
            result = await awaitable
        except (SMTPException, OSError, TimeoutError) as exc:
            error = self.translate(exc, stage)
            if error is None:
                raise
        else:
            return result
        # Raised outside the except block on purpose: no __context__ carrying the raw (unredacted) reply.
        raise error


async def _promptly_cancellable(
    awaitable: Awaitable[T], on_cancel: Callable[[], object], discard: Callable[[T], object] | None = None
) -> T:
    """Await ``awaitable`` in its own task, so that cancelling the caller takes effect immediately.

    Python 3.11's ``asyncio.wait_for`` (used by aiosmtplib for every read, and by ``open_socket``)
    returns the inner result instead of raising ``CancelledError`` when the cancellation arrives in the
    same loop iteration as the inner completion (fixed in 3.12): the cancelled verification would carry
    on until its next timeout. Waiting with ``asyncio.wait`` cannot swallow our own cancellation; the
    step's task is then cancelled, ``on_cancel`` (closing the connection) runs before we re-raise, and a
    result that still arrives later is handed to ``discard`` (closing a socket nobody will use).
    """
    inner = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({inner})
    except asyncio.CancelledError:
        inner.cancel()
        inner.add_done_callback(lambda task: _settle(task, discard))
        on_cancel()
        raise
    return inner.result()


def _settle(task: asyncio.Future[T], discard: Callable[[T], object] | None) -> None:
    if task.cancelled():
        return
    if task.exception() is None and discard is not None:  # retrieving it also silences asyncio's warning
        discard(task.result())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


def _reply_detail(code: str, stage: Stage, reply: ServerReply) -> str:
    where = STAGE_WORDS[stage]
    what = {
        "smtp.starttls_required": f"the server requires STARTTLS before {where}",
        "smtp.auth_failed": "the server refused the login"
        if stage == "auth"
        else f"the server requires a login ({where})",
        "smtp.auth_unsupported": "the server does not support the login method",
        "smtp.tls_handshake_failed": "the server could not start TLS",
        "smtp.starttls_unsupported": "the server refused STARTTLS",
        "smtp.sender_rejected": "the server refused the sender address",
        "smtp.recipient_rejected": "the server refused the recipient address",
        "smtp.relay_denied": "the server refused to relay to the recipient",
        "smtp.throttled": f"the server temporarily refused {where}",
        "smtp.rejected": f"the server refused {where}",
    }.get(code, f"the server refused {where}")
    return f"{what}: {reply}"


def _ehlo_name(sock: socket.socket) -> str:
    """Our EHLO argument: the address literal of our end (RFC 5321 4.1.3), no DNS lookup, no host name leak."""
    address = sock.getsockname()[0]
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def _require_verifying(context: ssl.SSLContext) -> None:
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ValueError("the shared TLS context must verify certificates and host names")


async def _open(server: SmtpServer, net: NetContext) -> tuple[Target, socket.socket]:
    """Resolve through the egress policy and open TCP to the pinned address."""
    try:
        dns_limit = max(net.connect_timeout, float(net.resolver.lifetime))
        async with asyncio.timeout(dns_limit):
            target = await resolve_target(net.policy, net.resolver, server.host, server.port)
    except HostUnresolvable as exc:
        error = SmtpError("smtp.host_unresolvable", str(exc), "connect", None, HINTS["smtp.host_unresolvable"])
    except HostNotAllowed as exc:
        error = SmtpError("smtp.host_not_allowed", str(exc), "connect", None, HINTS["smtp.host_not_allowed"])
    except TimeoutError:
        error = SmtpError(
            "smtp.host_unresolvable",
            f"{server.host} did not resolve in time (DNS timed out)",
            "connect",
            None,
            HINTS["smtp.host_unresolvable"],
        )
    else:
        try:
            return target, await open_socket(target, net.connect_timeout)
        except TimeoutError:
            error = SmtpError(
                "smtp.timeout",
                f"no TCP connection to {server.host} port {server.port} within {net.connect_timeout:g} s",
                "connect",
                None,
                HINTS["smtp.timeout"],
            )
        except OSError as exc:
            error = SmtpError(
                "smtp.connection_refused",
                f"cannot connect to {server.host} port {server.port}: {_reason(exc)}",
                "connect",
                None,
                HINTS["smtp.connection_refused"],
            )
    raise error


async def connect(server: SmtpServer, net: NetContext, *, local_hostname: str | None = None) -> SmtpConnection:
    """A connected client: TLS per mode (verified against ``server.host``), EHLO done, AUTH done if credentials.

    Raises ``SmtpError``. The caller owns the returned connection and must ``close()`` (or ``quit()``) it.
    """
    _require_verifying(net.tls)
    server = await server.with_password()
    target, sock = await _promptly_cancellable(
        _open(server, net), on_cancel=lambda: None, discard=lambda opened: opened[1].close()
    )
    try:
        conn = SmtpConnection(server, target, net, sock, local_hostname or _ehlo_name(sock))
    except BaseException:
        sock.close()  # aiosmtplib never saw the socket
        raise
    # From here the socket belongs to aiosmtplib/asyncio: conn.close() closes it.
    try:
        await _handshake(conn, server, net)
    except BaseException:
        conn.close()
        raise
    return conn


async def _ehlo(conn: SmtpConnection) -> None:
    try:
        await conn.step("ehlo", conn.ehlo())
    except SmtpError as exc:
        if exc.reply is None or exc.reply.code not in (500, 502) or not conn.is_connected:
            raise
        await conn.step("ehlo", conn.helo())  # a server without ESMTP: no STARTTLS, no AUTH


async def _handshake(conn: SmtpConnection, server: SmtpServer, net: NetContext) -> None:
    await conn.step("connect", conn.connect(timeout=net.connect_timeout))
    await _ehlo(conn)

    if server.mode == "starttls":
        if not conn.supports_extension("starttls"):
            raise conn.fail(
                "smtp.starttls_unsupported",
                f"the server on port {server.port} does not offer STARTTLS",
                "tls",
            )
        await conn.step("tls", conn.starttls(server_hostname=conn.target.host.rstrip("."), timeout=net.connect_timeout))
        if not conn.encrypted:  # pragma: no cover - aiosmtplib raises instead; never continue in cleartext
            raise conn.fail("smtp.tls_handshake_failed", "the connection is not encrypted after STARTTLS", "tls")
        await _ehlo(conn)
    elif server.mode == "none":
        conn.warnings.append("the connection to the SMTP server is not encrypted (mode none)")
        if conn.supports_extension("starttls"):
            conn.warnings.append("the server offers STARTTLS: mode starttls would encrypt this connection")

    if server.has_credentials:
        await _authenticate(conn, server, net)


async def _authenticate(conn: SmtpConnection, server: SmtpServer, net: NetContext) -> None:
    username, password = server.username, server.password
    if username is None or password is None:
        return
    if server.auth_mechanism == "oauth2":
        await authenticate_oauth(conn, server, net, username, password)
        return
    if not conn.encrypted:
        if not server.allow_plaintext_auth:
            offers = " The server offers STARTTLS: use mode starttls." if conn.supports_extension("starttls") else ""
            raise conn.fail(
                "smtp.plaintext_auth_refused",
                "refusing to send the password over an unencrypted connection",
                "auth",
                HINTS["smtp.plaintext_auth_refused"] + offers,
            )
        conn.warnings.append("the password was sent without encryption (allow_plaintext_auth)")

    offered = conn.server_auth_methods
    if not conn.supports_extension("auth"):
        if not conn.encrypted and conn.supports_extension("starttls"):
            raise conn.fail(
                "smtp.starttls_required",
                "the server offers AUTH only after STARTTLS",
                "auth",
                "The server offers a login only over an encrypted connection: use mode starttls.",
            )
        raise conn.fail("smtp.auth_unsupported", "the server does not offer AUTH", "auth")
    mechanisms = [m for m in AUTH_MECHANISMS if m in offered]
    if not mechanisms:
        listed = " ".join(m.upper() for m in offered) or "none"
        raise conn.fail("smtp.auth_unsupported", f"the server offers AUTH {listed}; we support PLAIN and LOGIN", "auth")

    for index, mechanism in enumerate(mechanisms):
        method = conn.auth_plain if mechanism == "plain" else conn.auth_login
        try:
            # The secret is revealed here, for the AUTH command (and the redaction of what follows), only.
            secret = password.reveal()
            conn.secret_forms = credential_forms(username, secret)
            await conn.step("auth", method(username, secret, timeout=net.command_timeout))
        except SmtpError as exc:
            advertised_but_unknown = exc.reply is not None and exc.reply.code == 504
            if advertised_but_unknown and index + 1 < len(mechanisms) and conn.is_connected:
                continue
            raise
        conn.auth_mechanism = mechanism.upper()
        return


async def reset(conn: SmtpConnection, *, timeout: float | None = None) -> bool:
    """RSET (RFC 5321 4.1.1.5) on a connection about to be reused: abort any transaction, prove it is alive.

    True when the server answered 250. Anything else (no connection, a timeout, a lost connection, another
    reply) closes the connection and returns False: the caller opens a new one. ``timeout`` defaults to
    ``net.command_timeout``. A cancellation closes the connection at once.
    """
    if not conn.is_connected:
        conn.close()
        return False
    limit = conn.net.command_timeout if timeout is None else timeout
    try:
        # execute_command rather than SMTP.rset(): rset() would send EHLO first on a reset session.
        response = await _promptly_cancellable(conn.execute_command(b"RSET", timeout=limit), on_cancel=conn.close)
    except (SMTPException, OSError, TimeoutError):
        conn.close()
        return False
    if response.code != 250:
        conn.close()
        return False
    return True


async def close_gracefully(conn: SmtpConnection, *, timeout: float | None = None) -> None:
    """QUIT (bounded by ``timeout``, default ``net.command_timeout``), then close; never raises but on cancellation."""
    try:
        if conn.is_connected:
            limit = conn.net.command_timeout if timeout is None else timeout
            with contextlib.suppress(SMTPException, OSError, TimeoutError):
                await _promptly_cancellable(conn.quit(timeout=limit), on_cancel=conn.close)
    finally:
        conn.close()
