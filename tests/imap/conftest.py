"""IMAP test set-up: a private Dovecot, test certificates, a tiny DNS responder, and fake servers.

* ``dovecot``: one private instance per run (``tests/servers/dovecot.py``). Without Dovecot installed the
  IMAP tests are skipped locally and fail under CI (``CI`` set), so a missing install is never green.
* DNS: a minimal authoritative UDP responder on loopback: ``A 127.0.0.1`` for ``example.test`` and
  every name under it, NOERROR/no data for other types there, NXDOMAIN for everything else. The
  product's resolver (``make_resolver``) points at it, so host names go through the same
  resolve-check-pin path as in production.
* ``net``: a ``NetContext`` whose policy allows 127.0.0.1 and the Dovecot ports
  (``EgressPolicy.from_entries``) and whose TLS context trusts the test CA (``make_tls_context``).
* ``FakeImap``: a real TCP server speaking just enough IMAP to produce what Dovecot will not (no
  STARTTLS, a refused STARTTLS, bytes injected after STARTTLS, a BYE greeting, a reply echoing the
  password) and to record the commands it received. ``silent_server`` accepts and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from nimbus_api.imap import ImapServer, Mode
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.egress import EgressPolicy, make_resolver
from nimbus_api.kit.net import NetContext, make_tls_context
from tests.servers.certs import TestCerts, make_test_certs
from tests.servers.dovecot import Dovecot, dovecot_available

ZONE = "example.test"
IMAP_HOST = "imap.example.test"


class DnsResponder:
    """A loopback UDP DNS server: every name in ``ZONE`` has ``A 127.0.0.1``; the rest is NXDOMAIN."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    def __enter__(self) -> DnsResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            if name != ZONE and not name.endswith("." + ZONE):
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
            self.sock.sendto(response.to_wire(), peer)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("imap-certs"))


@pytest.fixture(scope="session")
def dovecot(certs: TestCerts) -> Iterator[Dovecot]:
    if not dovecot_available():
        message = "Dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with Dovecot(certs) as server:
        yield server


@pytest.fixture(scope="session")
def dns_port() -> Iterator[int]:
    with DnsResponder() as responder:
        yield responder.port


def _policy(*ports: int, allow_loopback: bool = True) -> EgressPolicy:
    return EgressPolicy.from_entries([*(["127.0.0.1/32"] if allow_loopback else []), *(f":{p}" for p in ports)])


@pytest.fixture(scope="session")
def net(dovecot: Dovecot, certs: TestCerts, dns_port: int) -> NetContext:
    return NetContext(
        policy=_policy(dovecot.ports.imap, dovecot.ports.imaps, dovecot.ports.lmtp),
        resolver=make_resolver([f"127.0.0.1:{dns_port}"], 2.0),
        tls=make_tls_context(certs.ca_file),
        connect_timeout=3.0,
        command_timeout=5.0,
    )


@pytest.fixture
def net_for(net: NetContext) -> Callable[..., NetContext]:
    """``net_for(port, ..., command_timeout=.., allow_loopback=..)``: the same context for other ports."""

    def make(
        *ports: int,
        allow_loopback: bool = True,
        connect_timeout: float | None = None,
        command_timeout: float | None = None,
    ) -> NetContext:
        return dataclasses.replace(
            net,
            policy=_policy(*ports, allow_loopback=allow_loopback),
            connect_timeout=connect_timeout or net.connect_timeout,
            command_timeout=command_timeout or net.command_timeout,
        )

    return make


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    password: str


@pytest.fixture
def user(dovecot: Dovecot) -> User:
    """A fresh mailbox per test (nothing leaks between tests)."""
    created = User(f"u{secrets.token_hex(4)}@{ZONE}", f"pw-{secrets.token_urlsafe(9)}")
    dovecot.add_user(created.name, created.password)
    return created


@pytest.fixture
def server_for(dovecot: Dovecot) -> Callable[..., ImapServer]:
    """``server_for(user, mode, **fields)``: an ``ImapServer`` for the private Dovecot."""

    def make(user: User, mode: Mode = "ssl", **fields: object) -> ImapServer:
        port = dovecot.ports.imaps if mode == "ssl" else dovecot.ports.imap
        values: dict[str, object] = {
            "host": IMAP_HOST,
            "port": port,
            "mode": mode,
            "username": user.name,
            "password": Secret(user.password),
        }
        values.update(fields)
        return ImapServer(**values)  # type: ignore[arg-type]

    return make


def message(token: str, *, header: str = "X-Nimbus-Test", subject: str = "nimbus test") -> bytes:
    return (
        f"From: sender@example.test\r\nTo: someone@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.test>\r\n{header}: {token}\r\n\r\nHello.\r\n"
    ).encode()


# --------------------------------------------------------------------------------------------------
# Fake servers (real sockets, minimal IMAP)


class FakeImap:
    """Greets, answers CAPABILITY/LOGIN (OK)/LOGOUT/NOOP, and replies to other commands from ``replies``.

    ``replies`` maps a command name to the raw reply (``{tag}`` is replaced); every received line is
    kept in ``received``.
    """

    def __init__(
        self,
        *,
        capabilities: str = "IMAP4rev1 AUTH=PLAIN",
        greeting: str = "* OK fake IMAP ready",
        replies: dict[str, str] | None = None,
    ) -> None:
        self.capabilities = capabilities
        self.greeting = greeting
        self.replies = replies or {}
        self.received: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FakeImap:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    @property
    def commands(self) -> list[str]:
        return [line.split(" ", 2)[1].upper() for line in self.received if " " in line]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            writer.write(f"{self.greeting}\r\n".encode())
            while line := (await reader.readline()).decode(errors="replace").rstrip("\r\n"):
                self.received.append(line)
                tag, _, rest = line.partition(" ")
                command = rest.split(" ", 1)[0].upper()
                if command in self.replies:
                    writer.write(self.replies[command].replace("{tag}", tag).encode())
                elif command == "CAPABILITY":
                    writer.write(f"* CAPABILITY {self.capabilities}\r\n{tag} OK done\r\n".encode())
                elif command == "LOGOUT":
                    writer.write(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                    await writer.drain()
                    break
                elif command == "LOGIN":
                    writer.write(f"{tag} OK logged in\r\n".encode())
                elif command == "NOOP":
                    writer.write(f"{tag} OK done\r\n".encode())
                else:
                    writer.write(f"{tag} BAD unknown command\r\n".encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class SilentServer:
    """A TCP server that accepts and never says a word (not even a TLS handshake).

    ``closed`` counts connections the client closed (EOF seen), to check nothing is left open.
    """

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self.closed = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client gives up
        self.closed += 1

    async def wait_all_closed(self, timeout: float = 2.0) -> bool:
        for _ in range(int(timeout / 0.01)):
            if self.closed == self.accepted:
                return True
            await asyncio.sleep(0.01)
        return False

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    async with SilentServer() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
