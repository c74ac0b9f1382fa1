"""A small authoritative DNS server for the tests, on loopback UDP and TCP (same port), on dnspython.

Zones come from zone-file text (``add_zone``) and can be added while the server runs. Answers:

* A/AAAA/MX/TXT/CNAME/... whatever the zone holds for the name and type, with the AA bit;
* CNAMEs are followed within our zones (the chain and the final records are in the answer);
* NXDOMAIN for a name inside one of our zones that does not exist (empty non-terminals are NODATA);
* NOERROR without answer (NODATA) for an existing name without that type;
* REFUSED for names outside our zones;
* over UDP, an answer larger than the client's limit (512 bytes without EDNS, or the EDNS payload; or
  ``max_udp_size`` when set) is sent empty with the TC bit, and clients retry over TCP;
* names in ``silent_names`` (any case, with or without the final dot) are never answered, over either
  transport, which is how tests produce timeouts.

No wildcards, no DNSSEC, no zone transfers. Every query is logged in ``queries`` (name, type,
transport) so tests can assert what was asked and how.

Usage::

    async with TestDnsServer() as server:
        server.add_zone(make_zone("example.test", "mail A 127.0.0.1"), "example.test")
        resolver = server.resolver(timeout=2.0)  # a dns.asyncresolver.Resolver on 127.0.0.1:<port>
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

from nimbus_api.kit.egress import make_resolver

_MAX_CNAME_CHAIN = 16


@dataclass(frozen=True)
class QueryLog:
    name: str  # lower case, no final dot
    rdtype: str
    transport: str  # udp | tcp


def txt(value: str, chunk: int = 255) -> str:
    """``value`` as TXT rdata text: quoted, escaped, split into strings of at most ``chunk`` bytes."""
    parts = [value[i : i + chunk] for i in range(0, len(value), chunk)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


def make_zone(origin: str, body: str, *, ttl: int = 60) -> str:
    """Zone text for ``origin`` with a default TTL, an SOA and an NS record, then ``body``."""
    origin = origin.rstrip(".") + "."
    return f"$TTL {ttl}\n@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {ttl}\n@ IN NS ns.{origin}\n{body}\n"


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: TestDnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: on Python 3.11 the selector loop's datagram transport does not
        # inherit from asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.server.answer(data, transport="udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class TestDnsServer:
    """Authoritative DNS for the tests; see the module docstring."""

    __test__ = False  # not a test class, although its name starts with "Test"

    def __init__(self, host: str = "127.0.0.1", *, max_udp_size: int | None = None) -> None:
        self.host = host
        self.port = 0
        self.max_udp_size = max_udp_size
        self.silent_names: set[str] = set()
        self.queries: list[QueryLog] = []
        self._zones: dict[dns.name.Name, dns.zone.Zone] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    # --- zones -------------------------------------------------------------------------------

    def add_zone(self, text: str, origin: str) -> None:
        """Serve ``text`` (zone-file syntax, names relative to ``origin``); replaces a zone of that origin."""
        name = dns.name.from_text(origin)
        if "$TTL" not in text:
            text = "$TTL 60\n" + text
        zone = dns.zone.from_text(text, origin=name, relativize=False, check_origin=False)
        if zone.get_rdataset(name, dns.rdatatype.SOA) is None:
            soa = zone.find_rdataset(name, dns.rdatatype.SOA, create=True)
            soa.add(
                dns.rdata.from_text(
                    dns.rdataclass.IN, dns.rdatatype.SOA, f"ns.{name} hostmaster.{name} 1 3600 600 86400 60"
                ),
                60,
            )
        self._zones[name] = zone

    def remove_zone(self, origin: str) -> None:
        self._zones.pop(dns.name.from_text(origin), None)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """``IP:PORT``, as ``NIMBUS_DNS_NAMESERVERS`` and ``make_resolver`` take it."""
        return f"{self.host}:{self.port}"

    def resolver(self, timeout: float = 2.0) -> dns.asyncresolver.Resolver:
        return make_resolver([self.nameserver], timeout)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for _ in range(20):  # UDP picks a free port; TCP must get the same one
            transport, _protocol = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, 0))
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError as exc:
                transport.close()
                last_error = exc
                continue
            self._udp, self.port = transport, port
            return
        raise RuntimeError(f"could not bind UDP and TCP on the same port: {last_error}")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> TestDnsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- protocol ----------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                header = await reader.readexactly(2)
                wire = await reader.readexactly(struct.unpack("!H", header)[0])
                reply = self.answer(wire, transport="tcp")
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def answer(self, wire: bytes, *, transport: str = "udp") -> bytes | None:
        """The reply to one query in wire format, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not worth a FORMERR for tests
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(QueryLog(name, dns.rdatatype.to_text(question.rdtype), transport))
        if name in {s.lower().rstrip(".") for s in self.silent_names}:
            return None
        self._resolve(question.name, question.rdtype, response)
        if transport == "tcp":
            return response.to_wire()
        limit = query.payload if query.edns >= 0 else 512
        if self.max_udp_size is not None:
            limit = min(limit, self.max_udp_size)
        wire_out = response.to_wire(max_size=65535)
        if len(wire_out) <= limit:
            return wire_out
        # Measured by hand: dnspython's own max_size never goes below 512, ``max_udp_size`` may.
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.AA | dns.flags.TC
        return truncated.to_wire()

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        origins = [origin for origin in self._zones if name.is_subdomain(origin)]
        if not origins:
            return None
        return self._zones[max(origins, key=len)]

    def _resolve(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, response: dns.message.Message) -> None:
        name = qname
        for step in range(_MAX_CNAME_CHAIN):
            zone = self._zone_for(name)
            if zone is None:
                if step == 0:
                    response.set_rcode(dns.rcode.REFUSED)
                return  # a CNAME out of our zones: the answer holds the chain so far
            response.flags |= dns.flags.AA
            node = zone.get_node(name)
            if node is None:
                if not self._is_empty_non_terminal(zone, name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                self._add_soa(zone, response)
                return
            rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rdataset is not None:
                response.answer.append(self._rrset(name, rdataset))
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                self._add_soa(zone, response)  # NODATA
                return
            response.answer.append(self._rrset(name, cname))
            name = next(iter(cname)).target
        response.set_rcode(dns.rcode.SERVFAIL)  # CNAME loop

    @staticmethod
    def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))

    @staticmethod
    def _is_empty_non_terminal(zone: dns.zone.Zone, name: dns.name.Name) -> bool:
        return any(other != name and other.is_subdomain(name) for other in zone.nodes)

    @staticmethod
    def _add_soa(zone: dns.zone.Zone, response: dns.message.Message) -> None:
        origin = zone.origin
        assert origin is not None
        soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
        if soa is not None:
            response.authority.append(TestDnsServer._rrset(origin, soa))


@asynccontextmanager
async def serve_dns(*zones: tuple[str, str], max_udp_size: int | None = None) -> AsyncIterator[TestDnsServer]:
    """A running server with ``zones`` (``(text, origin)`` pairs) for a fixture's ``async with``."""
    server = TestDnsServer(max_udp_size=max_udp_size)
    for text, origin in zones:
        server.add_zone(text, origin)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


__all__ = ["QueryLog", "TestDnsServer", "make_zone", "serve_dns", "txt"]
