"""Fixtures for the SMTP adapter tests: certificates, a stub DNS server, a NetContext, real SMTP servers.

The product resolves host names with dnspython against its configured name servers, never through
/etc/hosts, and certificate checks need names. So a tiny UDP DNS responder runs in the test loop:
``*.example.test`` (and ``smtp.gmail.com``, for the provider hint) answer ``A 127.0.0.1``; names whose
first label starts with ``nx`` and everything else answer NXDOMAIN. It is deliberately independent of
the shared tests/servers/dns_server.py.

The egress policy allows 127.0.0.1 and exactly the ports of the servers a test started; the TLS context
is built once (like the product's, one per process) and trusts the throwaway test CA.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, cast

import dns.asyncresolver
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from nimbus_api.kit.egress import EgressPolicy, make_resolver
from nimbus_api.kit.net import NetContext, make_tls_context
from tests.servers import certs as test_certs
from tests.servers.smtp_server import TestSmtpServer

STUB_ZONE = dns.name.from_text("example.test.")
STUB_EXTRA = {dns.name.from_text("smtp.gmail.com.")}


class _StubDns(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name
        self.queries.append(name.to_text())
        known = (name.is_subdomain(STUB_ZONE) or name in STUB_EXTRA) and not name.labels[0].startswith(b"nx")
        if not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.1"))
        response.flags |= dns.flags.AA
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> test_certs.TestCerts:
    return test_certs.make_test_certs(Path(tmp_path_factory.mktemp("smtp-certs")))


@pytest.fixture(scope="session")
def client_tls(certs: test_certs.TestCerts) -> ssl.SSLContext:
    return make_tls_context(certs.ca_file)


@pytest.fixture(scope="session")
async def stub_dns() -> AsyncIterator[tuple[int, _StubDns]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_StubDns, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1], protocol
    transport.close()


@pytest.fixture(scope="session")
def resolver(stub_dns: tuple[int, _StubDns]) -> dns.asyncresolver.Resolver:
    return make_resolver([f"127.0.0.1:{stub_dns[0]}"], timeout=1.0)


MakeNet = Callable[..., NetContext]


@pytest.fixture
def make_net(client_tls: ssl.SSLContext, resolver: dns.asyncresolver.Resolver) -> MakeNet:
    """``make_net(*ports, allow=["127.0.0.1/32"], connect_timeout=2, command_timeout=2)``."""

    def factory(
        *ports: int,
        allow: Iterable[str] = ("127.0.0.1/32",),
        connect_timeout: float = 2.0,
        command_timeout: float = 2.0,
    ) -> NetContext:
        return NetContext(
            policy=EgressPolicy.from_entries([*allow, *(f":{p}" for p in ports)]),
            resolver=resolver,
            tls=client_tls,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
        )

    return factory


Serve = Callable[..., Awaitable[TestSmtpServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(**TestSmtpServer options)``: a started server, stopped after the test."""
    started: list[TestSmtpServer] = []

    async def factory(**options: Any) -> TestSmtpServer:
        server = await TestSmtpServer(**options).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
