"""The egress policy: which addresses and ports a connection to a user-supplied host may reach.

Decisions are tested on the function itself (no connection is ever opened to a private or public
address); resolution is tested against the real test DNS server on loopback.
"""

from __future__ import annotations

import ipaddress

import pytest

from nimbus_api.kit.egress import (
    EgressPolicy,
    HostNotAllowed,
    HostUnresolvable,
    make_resolver,
    resolve_target,
)
from tests.servers.dns_server import TestDnsServer, make_zone

DEFAULT = EgressPolicy.from_entries([])

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback range"),
    ("::1", "IPv6 loopback"),
    ("10.1.2.3", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("192.168.1.1", "RFC 1918"),
    ("169.254.10.10", "link-local"),
    ("fe80::1", "IPv6 link-local"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "IPv6 multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "IPv6 unspecified"),
    ("fd00::1", "unique local"),
    ("::ffff:8.8.8.8", "IPv4-mapped IPv6 of a public address"),
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6 of loopback"),
    ("2002:7f00:1::1", "6to4 of loopback"),
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "AWS IPv6 metadata"),
    ("100.100.100.200", "Alibaba metadata"),
    ("192.0.2.10", "documentation"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED, ids=[f"{a} {w}" for a, w in REFUSED])
def test_non_public_addresses_are_refused_by_default(address: str, why: str) -> None:
    assert not DEFAULT.address_allowed(ipaddress.ip_address(address)), why


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert DEFAULT.address_allowed(ipaddress.ip_address(address))


def test_allowlisted_cidr_and_host_open_private_addresses() -> None:
    policy = EgressPolicy.from_entries(["10.0.5.0/24", "relay.corp.example", "fd12::/16"])
    assert policy.address_allowed(ipaddress.ip_address("10.0.5.7"))
    assert not policy.address_allowed(ipaddress.ip_address("10.0.6.7"))
    assert policy.address_allowed(ipaddress.ip_address("192.168.9.9"), host="relay.corp.example.")
    assert not policy.address_allowed(ipaddress.ip_address("192.168.9.9"), host="other.corp.example")
    assert policy.address_allowed(ipaddress.ip_address("fd12::5"))


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200"])
def test_metadata_addresses_are_never_allowlistable(address: str) -> None:
    policy = EgressPolicy.from_entries(["0.0.0.0/0", "::/0", "169.254.0.0/16", "metadata.internal"])
    assert not policy.address_allowed(ipaddress.ip_address(address), host="metadata.internal")


def test_ipv4_mapped_addresses_pass_only_when_their_ipv4_is_allowlisted() -> None:
    policy = EgressPolicy.from_entries(["127.0.0.0/8"])
    assert policy.address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.address_allowed(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert not policy.address_allowed(ipaddress.ip_address("::ffff:169.254.169.254"))


def test_ports_standard_extra_and_ranges() -> None:
    assert all(DEFAULT.port_allowed(p) for p in (25, 465, 587, 2525, 143, 993, 443))
    assert not DEFAULT.port_allowed(6379)
    assert not DEFAULT.port_allowed(5432)
    policy = EgressPolicy.from_entries([":2526", ":10000-10002"])
    assert policy.port_allowed(2526)
    assert policy.port_allowed(10001)
    assert not policy.port_allowed(10003)
    with pytest.raises(ValueError, match="port out of range"):
        EgressPolicy.from_entries([":70000"])


@pytest.fixture(scope="module")
async def dns_with_names():  # type: ignore[no-untyped-def]
    server = TestDnsServer()
    server.add_zone(
        make_zone(
            "egress.test",
            "private IN A 10.9.8.7\n"
            "loop IN A 127.0.0.1\n"
            "meta IN A 169.254.169.254\n"
            "mixed IN A 10.0.0.1\n"
            "mixed IN A 127.0.0.1\n"
            "v6loop IN AAAA ::1\n",
        ),
        "egress.test",
    )
    await server.start()
    yield server
    await server.stop()


async def test_resolution_pins_an_allowed_address_and_hides_internal_ones(dns_with_names) -> None:  # type: ignore[no-untyped-def]
    resolver = make_resolver([dns_with_names.nameserver], 2.0)
    for name in ("private.egress.test", "loop.egress.test", "meta.egress.test", "v6loop.egress.test"):
        with pytest.raises(HostNotAllowed) as caught:
            await resolve_target(DEFAULT, resolver, name, 587)
        assert "10.9.8.7" not in str(caught.value)
        assert "127.0.0.1" not in str(caught.value)
        assert "169.254" not in str(caught.value)
    with pytest.raises(HostUnresolvable):
        await resolve_target(DEFAULT, resolver, "nothing.egress.test", 587)
    allow_loopback = EgressPolicy.from_entries(["127.0.0.0/8"])
    target = await resolve_target(allow_loopback, resolver, "mixed.egress.test", 587)
    assert (target.host, target.ip, target.port) == ("mixed.egress.test", "127.0.0.1", 587)
    with pytest.raises(HostNotAllowed, match="port 6379"):
        await resolve_target(allow_loopback, resolver, "loop.egress.test", 6379)
    with pytest.raises(HostNotAllowed):
        await resolve_target(EgressPolicy.from_entries(["127.0.0.0/8"]), resolver, "meta.egress.test", 587)


async def test_ip_literals_go_through_the_same_policy(dns_with_names) -> None:  # type: ignore[no-untyped-def]
    resolver = make_resolver([dns_with_names.nameserver], 2.0)
    with pytest.raises(HostNotAllowed):
        await resolve_target(DEFAULT, resolver, "127.0.0.1", 587)
    with pytest.raises(HostNotAllowed):
        await resolve_target(DEFAULT, resolver, "169.254.169.254", 443)
