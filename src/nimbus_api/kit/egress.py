"""One egress policy for every connection to a user-supplied host (SMTP, IMAP, webhooks).

``resolve_target`` resolves the host with our resolver, keeps only the addresses the policy allows, and
returns a ``Target`` pinned to one checked address. Callers connect to ``target.ip`` and verify TLS
against ``target.host``: the address that was checked is the address that is used, so there is no
DNS-rebinding window between check and connect.

Refused by default: loopback, private (RFC 1918, ULA), link-local, CGNAT (100.64/10), multicast,
unspecified, reserved and documentation ranges, IPv4-mapped/translated IPv6 forms, and anything else
that is not globally routable. Cloud metadata addresses are refused even when allowlisted.

Operators open exceptions with ``NIMBUS_EGRESS_ALLOW`` (comma-separated): a CIDR or address
(``10.0.5.0/24``), a host name (``relay.corp.example``, which then may resolve to private addresses),
or a port or port range (``:2526``, ``:10000-10100``) added to the standard mail and web ports.

Refusals never say which internal address a name resolved to: the message names only the host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

STANDARD_PORTS = frozenset({25, 465, 587, 2525, 143, 993, 80, 443})
WEB_PORTS = frozenset({80, 443})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.123", "100.100.100.200", "fd00:ec2::254")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_PORT_ENTRY = re.compile(r"^:(\d{1,5})(?:-(\d{1,5}))?$")


class EgressError(Exception):
    """Base of egress refusals; ``code_suffix`` completes ``smtp.``/``imap.``/``webhook.`` codes."""

    code_suffix = "host_not_allowed"


class HostNotAllowed(EgressError):
    code_suffix = "host_not_allowed"


class HostUnresolvable(EgressError):
    code_suffix = "host_unresolvable"


@dataclass(frozen=True)
class Target:
    """A connection target whose address passed the policy."""

    host: str
    ip: str
    port: int


@dataclass(frozen=True)
class EgressPolicy:
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    allow_ports: frozenset[int] = field(default_factory=lambda: STANDARD_PORTS)
    explicit_ports: frozenset[int] = frozenset()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EgressPolicy:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        explicit: set[int] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            port_entry = _PORT_ENTRY.match(entry)
            if port_entry:
                first, last = int(port_entry[1]), int(port_entry[2] or port_entry[1])
                if not 1 <= first <= last <= 65535:
                    raise ValueError(f"egress allow entry {raw!r}: port out of range")
                explicit.update(range(first, last + 1))
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(
            allow_networks=tuple(networks),
            allow_hosts=frozenset(hosts),
            allow_ports=STANDARD_PORTS | explicit,
            explicit_ports=frozenset(explicit),
        )

    def port_allowed(self, port: int) -> bool:
        return port in self.allow_ports

    def web_port_allowed(self, port: int) -> bool:
        """Webhook URLs: 443 and 80, plus the ports an operator listed; never the other mail ports."""
        return port in WEB_PORTS or port in self.explicit_ports

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` is an allowlisted name (which may then resolve to private addresses)."""
        return host.lower().rstrip(".") in self.allow_hosts

    def address_allowed(self, address: IPAddress, host: str | None = None) -> bool:
        """The decision for one address (``host`` is the name it was resolved from, if any)."""
        if isinstance(address, ipaddress.IPv6Address):
            embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
            if embedded is not None:
                # An IPv4 address wearing IPv6 clothes: decided as IPv4, and only by explicit allowlisting.
                return not _is_metadata(embedded) and self._explicitly_allowed(embedded, host)
        if _is_metadata(address):
            return False
        if self._explicitly_allowed(address, host):
            return True
        return _is_public(address)

    def _explicitly_allowed(self, address: IPAddress, host: str | None) -> bool:
        if host is not None and host.lower().rstrip(".") in self.allow_hosts:
            return True
        return any(address.version == net.version and address in net for net in self.allow_networks)


def _is_metadata(address: IPAddress) -> bool:
    return address in METADATA_ADDRESSES


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not address.is_link_local
        and not address.is_loopback
        and not address.is_private
    )


def make_resolver(nameservers: Sequence[str], timeout: float) -> dns.asyncresolver.Resolver:
    """Our resolver: the configured ``IP[:PORT]`` servers, or the system's when none are given."""
    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*_split_host_port(entry)) for entry in nameservers]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def _split_host_port(entry: str) -> tuple[str, int]:
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port)
    return entry, 53


async def resolve_addresses(resolver: dns.asyncresolver.Resolver, host: str) -> list[IPAddress]:
    """A and AAAA records of ``host`` (IPv4 first); an IP literal resolves to itself."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found: list[IPAddress] = []
    errors = 0
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            continue
        except dns.exception.Timeout:
            errors += 1
            continue
        found += [ipaddress.ip_address(r.to_text()) for r in answer]
    if not found:
        raise HostUnresolvable(f"{host} does not resolve" + (" (DNS timed out)" if errors else ""))
    return found


async def resolve_target(policy: EgressPolicy, resolver: dns.asyncresolver.Resolver, host: str, port: int) -> Target:
    """Resolve ``host``, apply the policy, and pin the first allowed address."""
    if not policy.port_allowed(port):
        raise HostNotAllowed(f"port {port} is not allowed for outbound connections (operator: NIMBUS_EGRESS_ALLOW)")
    for address in await resolve_addresses(resolver, host):
        if policy.address_allowed(address, host):
            return Target(host=host, ip=str(address), port=port)
    raise HostNotAllowed(f"{host} resolves to an address outbound connections may not reach")


async def open_socket(target: Target, timeout: float) -> socket.socket:
    """A connected, non-blocking TCP socket to the pinned address (for clients that take ``sock=``)."""
    family = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (target.ip, target.port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = [
    "METADATA_ADDRESSES",
    "STANDARD_PORTS",
    "WEB_PORTS",
    "EgressError",
    "EgressPolicy",
    "HostNotAllowed",
    "HostUnresolvable",
    "Target",
    "make_resolver",
    "open_socket",
    "resolve_addresses",
    "resolve_target",
]
