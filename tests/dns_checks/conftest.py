"""Fixtures for the DNS check tests: one real authoritative DNS server for the session.

The server starts empty; each test module adds the zones it needs (``dns_server.add_zone``), so the
cases sit next to their assertions. The resolver is the product's own (``make_resolver``) pointed at
the server's loopback port, exactly as ``NIMBUS_DNS_NAMESERVERS=127.0.0.1:<port>`` would configure it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import dns.asyncresolver
import pytest

from tests.servers.dns_server import TestDnsServer

RESOLVER_TIMEOUT = 2.0


@pytest.fixture(scope="session")
async def dns_server() -> AsyncIterator[TestDnsServer]:
    server = TestDnsServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def resolver(dns_server: TestDnsServer) -> dns.asyncresolver.Resolver:
    return dns_server.resolver(timeout=RESOLVER_TIMEOUT)
