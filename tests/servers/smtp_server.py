"""Real SMTP servers for tests (aiosmtpd) on loopback, each configurable to fail the way real servers do.

``TestSmtpServer`` runs *in the test's own event loop* (``loop.create_server`` with aiosmtpd's ``SMTP``
protocol) rather than in aiosmtpd's ``Controller``, which starts a thread with a second loop. In-loop:

* hooks are plain coroutines of the test's loop: ``deliver`` can await other test fixtures (an LMTP
  client towards Dovecot, a queue) without crossing threads or loops;
* the state tests assert on (``messages``, ``commands``, ``open_connections``) is read without locks
  and is up to date as soon as the client's await returns;
* start and stop are awaitables, with no thread to join and no port-readiness polling.

What a server can be told to do:

* ``users={"ada": "s3cret"}``: AUTH PLAIN and LOGIN through aiosmtpd's ``authenticator``; without
  users AUTH is not advertised at all; ``auth_mechanisms=["CRAM-MD5"]`` rewrites what EHLO advertises.
* ``tls_context=...`` offers STARTTLS, ``require_starttls=True`` answers 530 to anything but
  EHLO/NOOP/QUIT/STARTTLS before it; ``ssl_context=...`` is implicit TLS (SMTPS) from the first byte.
  ``auth_require_tls`` (default True) hides AUTH until TLS; it is moot under implicit TLS.
* ``replies={"RCPT": "554 5.7.1 Relay access denied"}``: scripted replies per stage: ``CONNECT``
  (greeting, then the server hangs up), ``EHLO``, ``STARTTLS``, ``AUTH``, ``MAIL``, ``RCPT``, and
  ``DATA`` (the reply to the final dot). ``AUTH`` is a format string that may quote what the client
  sent: ``{login}``, ``{password}``, ``{password_b64}``, ``{blob}`` (the PLAIN blob).
* ``refuse={"erin@xn--bcher-kva.test": "550 5.7.1 <...>: Recipient address rejected: Access denied"}``:
  a reply to RCPT for one recipient (compared lower-case, as the client wrote it), accepting the others;
  a dict tests may change while the server runs.
* ``smtputf8=False``: EHLO does not offer SMTPUTF8 (RFC 6531), and a non-ASCII command is a 500, as with
  a server that never heard of it; by default it is offered, as Postfix, Exchange and Gmail do.
* ``silent=True``: accepts TCP and never sends a byte (no greeting).
* ``stall_after_dot=True``: takes the whole message and never answers the final dot.
* ``pipelining=False``: EHLO does not offer PIPELINING (RFC 2920), so clients send one command at a
  time; by default it is offered, as most servers do (aiosmtpd reads pipelined commands in order).
* ``oauth_introspection_url="http://.../introspect"``: AUTH XOAUTH2 and OAUTHBEARER as well, the bearer
  token checked by an RFC 7662 introspection POST (``token=...``; active, and ``username`` equal to the
  SASL user). A refused token is answered as Gmail does: a 334 with base64 JSON
  (``{"status":"401","schemes":"bearer","scope":...}``; OAUTHBEARER: ``"status":"invalid_token"``), and
  after the client's empty line ``535 5.7.8``. ``oauth_attempts`` records (mechanism, user, accepted).
  ``oauth_refused_users`` (a set tests may change): OAuth logins of these users are refused whatever the
  token (a Microsoft tenant with SMTP AUTH disabled; ``oauth_failure_reply`` scripts its wording).
* ``hang_up_on_rset`` (a count tests may set while the server runs): the next that many RSETs are
  answered ``421 4.4.2`` and the connection is closed, as a server ending a session it holds open (an
  idle pooled connection is reset before reuse: the client then opens a new one and logs in again).
* ``deliver=async callable(envelope)``: every accepted message is appended to ``messages`` and then
  handed to ``deliver`` (e.g. to LMTP into Dovecot for a roundtrip); if it raises, the client gets 451.

What tests can look at: ``messages`` (aiosmtpd ``Envelope``), ``commands`` (verbs the clients sent,
upper-case, message content excluded), ``received`` (every byte clients sent, after TLS decryption: to
assert a secret never arrived), ``auth_attempts`` (mechanism, login), ``connections_total`` and
``open_connections`` (to assert a client closed its connection).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

Deliver = Callable[[Envelope], Awaitable[Any]]

OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
OAUTH_SCOPE = "https://mail.google.com/"

SCRIPTABLE = frozenset({"CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA"})


class _ConnectionLog:
    """Per-connection bookkeeping shared by the SMTP and the silent protocol."""

    def __init__(self, owner: TestSmtpServer) -> None:
        self.owner = owner
        self.raw: asyncio.BaseTransport | None = None
        self.buffer = b""
        self.in_data = False

    def made(self, transport: asyncio.BaseTransport) -> None:
        if self.raw is None:  # aiosmtpd calls connection_made again after STARTTLS
            self.raw = transport
            self.owner._track(transport)

    def lost(self) -> None:
        if self.raw is not None:
            self.owner._untrack(self.raw)

    def received(self, data: bytes) -> None:
        self.owner.received.extend(data)
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            line = line.rstrip(b"\r")
            if self.in_data:
                self.in_data = line != b"."
                continue
            verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
            self.owner.commands.append(verb)


class _SilentProtocol(asyncio.Protocol):
    def __init__(self, owner: TestSmtpServer) -> None:
        self.log = _ConnectionLog(owner)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.log.made(transport)

    def data_received(self, data: bytes) -> None:
        self.log.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.lost()


class _RecordingSMTP(SMTP):
    """aiosmtpd's protocol plus connection accounting, a raw transcript and scripted stages."""

    def __init__(self, owner: TestSmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.log = _ConnectionLog(owner)
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.log.made(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.log.lost()
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        self.log.received(data)
        super().data_received(data)

    async def push(self, status: Any) -> None:
        # Content follows only a 354 (a pipelined DATA may be refused): from here to "." is not commands.
        if str(status).startswith("354"):
            self.log.in_data = True
        await super().push(status)

    async def _handle_client(self) -> None:
        greeting = self.owner.replies.get("CONNECT")
        if greeting is None:
            await super()._handle_client()
            return
        await self.push(greeting)
        if self.transport is not None:
            self.transport.close()

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        if self.owner.hang_up_on_rset > 0:
            self.owner.hang_up_on_rset -= 1
            await self.push("421 4.4.2 mail.example.test Session ended, reconnect")
            if self._handler_coroutine is not None:
                self._handler_coroutine.cancel()
            if self.transport is not None:
                self.transport.close()
            return
        await super().smtp_RSET(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        scripted = self.owner.replies.get("STARTTLS")
        if scripted is not None:
            await self.push(scripted)
            return
        await super().smtp_STARTTLS(arg)


def parse_bearer(mechanism: str, blob: bytes) -> tuple[str, str]:
    """(user, token) of an XOAUTH2 (``user=U^Aauth=Bearer T^A^A``) or OAUTHBEARER (RFC 7628) response."""
    text = blob.decode("utf-8", "replace")
    user = token = ""
    parts = text.split("\x01")
    if mechanism == "OAUTHBEARER":
        gs2 = parts[0].split(",")
        user = next((item[2:] for item in gs2 if item.startswith("a=")), "")
        parts = parts[1:]
    for part in parts:
        key, _, value = part.partition("=")
        if key == "user":
            user = value
        elif key == "auth" and value[:7].lower() == "bearer ":
            token = value[7:]
    return user, token


class _Handler:
    def __init__(self, owner: TestSmtpServer) -> None:
        self.owner = owner

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.owner._oauth(server, "XOAUTH2", args)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.owner._oauth(server, "OAUTHBEARER", args)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        scripted = self.owner.replies.get("EHLO")
        if scripted is not None:
            return [scripted]
        session.host_name = hostname
        lines: list[str] = []
        for line in responses:
            if line[4:].upper().startswith("AUTH"):
                if self.owner.users is None:
                    continue
                if self.owner.auth_mechanisms is not None:
                    line = line[:4] + " ".join(["AUTH", *self.owner.auth_mechanisms])
            lines.append(line)
        if self.owner.pipelining:
            lines.insert(len(lines) - 1, "250-PIPELINING")  # the last line ("250 HELP") ends the list
        return lines

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = self.owner.replies.get("MAIL")
        if scripted is not None:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = self.owner.replies.get("RCPT") or self.owner.refuse.get(address.lower())
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owner = self.owner
        if owner.stall_after_dot:
            await asyncio.Event().wait()  # cancelled by aiosmtpd when the client goes away
        scripted = owner.replies.get("DATA")
        if scripted is not None:
            return scripted
        owner.messages.append(envelope)
        if owner.deliver is not None:
            try:
                await owner.deliver(envelope)
            except Exception as exc:
                return f"451 4.3.0 delivery failed: {type(exc).__name__}"
        return f"250 2.0.0 OK queued as T{len(owner.messages)}"


class TestSmtpServer:
    """An aiosmtpd server on 127.0.0.1 in the running loop (see the module docstring for options)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        auth_mechanisms: Sequence[str] | None = None,
        auth_require_tls: bool = True,
        require_starttls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        ssl_context: ssl.SSLContext | None = None,
        replies: Mapping[str, str] | None = None,
        silent: bool = False,
        stall_after_dot: bool = False,
        deliver: Deliver | None = None,
        pipelining: bool = True,
        refuse: Mapping[str, str] | None = None,
        smtputf8: bool = True,
        oauth_introspection_url: str = "",
        hostname: str = "mail.example.test",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if tls_context is not None and ssl_context is not None:
            raise ValueError("STARTTLS (tls_context) and implicit TLS (ssl_context) exclude each other")
        unknown = set(replies or {}) - SCRIPTABLE
        if unknown:
            raise ValueError(f"cannot script {sorted(unknown)}; scriptable: {sorted(SCRIPTABLE)}")
        self.users = dict(users) if users is not None else None
        self.auth_mechanisms = list(auth_mechanisms) if auth_mechanisms is not None else None
        self.auth_require_tls = auth_require_tls
        self.require_starttls = require_starttls
        self.tls_context = tls_context
        self.ssl_context = ssl_context
        self.replies = dict(replies or {})
        self.silent = silent
        self.stall_after_dot = stall_after_dot
        self.deliver = deliver
        self.pipelining = pipelining
        self.refuse = {address.lower(): reply for address, reply in (refuse or {}).items()}
        self.smtputf8 = smtputf8
        self.oauth_introspection_url = oauth_introspection_url
        self.oauth_attempts: list[tuple[str, str, bool]] = []
        #: the final reply to a refused token (None: Gmail's 535 5.7.8); tests script other providers' wording
        self.oauth_failure_reply: str | None = None
        self.oauth_refused_users: set[str] = set()
        self.hang_up_on_rset = 0
        self.hostname = hostname
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.BaseTransport] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._connected = asyncio.Event()
        self.messages: list[Envelope] = []
        self.commands: list[str] = []
        self.received = bytearray()
        self.auth_attempts: list[tuple[str, str]] = []
        self.connections_total = 0
        #: the most client connections open at one moment since start (or ``reset_peak``)
        self.peak_connections = 0

    def reset_peak(self) -> None:
        self.peak_connections = len(self._open)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return self._port

    def _track(self, transport: asyncio.BaseTransport) -> None:
        self._open.add(transport)
        self.peak_connections = max(self.peak_connections, len(self._open))
        self.connections_total += 1
        self._idle.clear()
        self._connected.set()

    def _untrack(self, transport: asyncio.BaseTransport) -> None:
        self._open.discard(transport)
        if not self._open:
            self._idle.set()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        self.auth_attempts.append((mechanism, login))
        scripted = self.replies.get("AUTH")
        if scripted is not None:
            blob = base64.b64encode(b"\0" + auth_data.login + b"\0" + auth_data.password).decode()
            message = scripted.format(
                login=login, password=password, password_b64=base64.b64encode(auth_data.password).decode(), blob=blob
            )
            return AuthResult(success=False, handled=False, message=message)
        if self.users is not None and self.users.get(login) == password:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def _introspect(self, token: str) -> dict[str, Any]:
        reply = httpx.post(self.oauth_introspection_url, data={"token": token}, timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    async def _oauth(self, server: SMTP, mechanism: str, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob: bytes | Any = base64.b64decode(args[1] if args[1] != "=" else "")
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        user, token = parse_bearer(mechanism, bytes(blob))
        accepted = False
        if token and user.lower() not in self.oauth_refused_users:
            info = await asyncio.to_thread(self._introspect, token)
            accepted = bool(info.get("active")) and str(info.get("username", "")).lower() == user.lower()
        self.auth_attempts.append((mechanism, user))
        self.oauth_attempts.append((mechanism, user, accepted))
        if accepted:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        status = "invalid_token" if mechanism == "OAUTHBEARER" else "401"
        challenge = json.dumps({"status": status, "schemes": "bearer", "scope": OAUTH_SCOPE}, separators=(",", ":"))
        if await server.challenge_auth(challenge) is MISSING:  # the client must answer with an empty line
            return AuthResult(success=False, handled=True)
        return AuthResult(
            success=False,
            handled=False,
            message=self.oauth_failure_reply
            or "535 5.7.8 Username and Password not accepted. For more information, go to "
            "https://support.google.com/mail/?p=BadCredentials",
        )

    def _protocol(self) -> asyncio.BaseProtocol:
        if self.silent:
            return _SilentProtocol(self)
        return _RecordingSMTP(
            self,
            _Handler(self),
            hostname=self.hostname,
            tls_context=self.tls_context,
            require_starttls=self.require_starttls,
            # Under implicit TLS aiosmtpd does not know the connection is encrypted: AUTH would stay hidden.
            auth_require_tls=self.auth_require_tls and self.ssl_context is None,
            authenticator=self._authenticate,
            enable_SMTPUTF8=self.smtputf8,
            auth_exclude_mechanism=() if self.oauth_introspection_url else OAUTH_MECHANISMS,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> TestSmtpServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self._port, ssl=self.ssl_context)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for transport in list(self._open):
            with contextlib.suppress(Exception):
                transport.abort()  # type: ignore[attr-defined]
        await self._server.wait_closed()
        await asyncio.sleep(0)

    async def wait_until_idle(self, timeout: float = 2.0) -> bool:
        """Wait until no client connection is open; False if some still is after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return not self._open

    async def wait_for_connections(self, count: int = 1, timeout: float = 2.0) -> None:
        """Wait until ``count`` connections have been accepted in total (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout):
            while self.connections_total < count:
                self._connected.clear()
                await self._connected.wait()

    def saw(self, verb: str) -> bool:
        return verb.upper() in self.commands

    async def __aenter__(self) -> TestSmtpServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


__all__ = ["OAUTH_MECHANISMS", "OAUTH_SCOPE", "SCRIPTABLE", "Deliver", "TestSmtpServer", "parse_bearer"]
