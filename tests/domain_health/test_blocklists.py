"""The blocklist testbed: real DNS answers from the loopback server, read through each list's table.

The zones carry the lists' real names (``zen.spamhaus.org``, ``dbl.spamhaus.org``, ...) so the
built-in interpretation tables are what is exercised; the resolver is the product's own, pointed at
the test server, so nothing leaves loopback. Cases: a listed address, a refused query
(127.255.255.254, "public resolver"), NXDOMAIN, a timeout (a name the server never answers), the DBL's
127.0.1.255, bitmask lists, IPv6 nibble names, TTL caching and the concurrency bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nimbus_api.blocklists import Answer, BlocklistChecker, TtlCache, default_lists, parse_entries, query_name
from nimbus_api.blocklists.lists import KNOWN
from tests.servers.dns_server import TestDnsServer, make_zone

LISTED = "192.0.2.1"
REFUSED = "192.0.2.5"
SILENT = "192.0.2.9"
CLEAN = "192.0.2.77"
PBL = "192.0.2.10"

ZEN = make_zone(
    "zen.spamhaus.org",
    "1.2.0.192 IN A 127.0.0.2\n"
    '1.2.0.192 IN TXT "listed for the tests"\n'
    "5.2.0.192 IN A 127.255.255.254\n"
    "10.2.0.192 60 IN A 127.0.0.10\n"
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 IN A 127.0.0.3\n",
    ttl=120,
)
DBL = make_zone(
    "dbl.spamhaus.org",
    "spammy.test IN A 127.0.1.2\nrefused.test IN A 127.0.1.255\nlimited.test IN A 127.255.255.255\n",
)
SURBL = make_zone("multi.surbl.org", "phish.test IN A 127.0.0.24\nblocked.test IN A 127.0.0.1\n")
URIBL = make_zone("multi.uribl.com", "grey.test IN A 127.0.0.4\n")
BARRACUDA = make_zone("b.barracudacentral.org", "")
SPAMCOP = make_zone("bl.spamcop.net", "1.2.0.192 IN A 127.0.0.2\n")


@pytest.fixture(scope="module")
async def dnsbl() -> AsyncIterator[TestDnsServer]:
    server = TestDnsServer()
    for text, origin in (
        (ZEN, "zen.spamhaus.org"),
        (DBL, "dbl.spamhaus.org"),
        (SURBL, "multi.surbl.org"),
        (URIBL, "multi.uribl.com"),
        (BARRACUDA, "b.barracudacentral.org"),
        (SPAMCOP, "bl.spamcop.net"),
    ):
        server.add_zone(text, origin)
    server.silent_names.add(f"9.2.0.192.{'zen.spamhaus.org'}")
    await server.start()
    yield server
    await server.stop()


def checker(
    server: TestDnsServer, *, timeout: float = 3.0, concurrency: int = 16, **kwargs: object
) -> BlocklistChecker:
    return BlocklistChecker(
        server.resolver(timeout=0.5),
        default_lists(),
        timeout=timeout,
        concurrency=concurrency,
        **kwargs,  # type: ignore[arg-type]
    )


def test_query_names_ipv4_ipv6_and_domains() -> None:
    zen = KNOWN["zen.spamhaus.org"]
    dbl = KNOWN["dbl.spamhaus.org"]
    assert query_name("192.0.2.1", zen) == "1.2.0.192.zen.spamhaus.org"
    assert query_name("::ffff:192.0.2.1", zen) == "1.2.0.192.zen.spamhaus.org"
    assert query_name("2001:db8::1", zen) == (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"
    )
    assert query_name("example.com", zen) is None  # a domain is not asked of an IP list
    assert query_name("Example.COM.", dbl) == "example.com.dbl.spamhaus.org"
    assert query_name("192.0.2.1", dbl) is None


async def test_listed_refused_clean_and_timeout_are_told_apart(dnsbl: TestDnsServer) -> None:
    report = await checker(dnsbl, timeout=2.0).check([LISTED, REFUSED, CLEAN, SILENT], [])
    zen = {r.subject: r for r in report.results if r.zone == "zen.spamhaus.org"}
    assert zen[LISTED].verdict == "listed" and zen[LISTED].blocking
    assert zen[LISTED].answer == ["127.0.0.2"] and "SBL" in zen[LISTED].meanings[0]
    # 127.255.255.254: Spamhaus refused a query through a public resolver; that is no listing.
    assert zen[REFUSED].verdict == "unknown" and not zen[REFUSED].blocking
    assert "public" in zen[REFUSED].meanings[0]
    assert zen[CLEAN].verdict == "clean"
    assert zen[SILENT].verdict == "unknown" and zen[SILENT].meanings == ["no answer in time"]
    # SpamCop lists the address too, but a SpamCop listing is informational by default.
    spamcop = next(r for r in report.results if r.zone == "bl.spamcop.net" and r.subject == LISTED)
    assert spamcop.verdict == "listed" and not spamcop.blocking
    assert report.status == "listed"
    assert {(r.zone, r.subject) for r in report.blocking} == {("zen.spamhaus.org", LISTED)}


async def test_pbl_is_a_listing_that_does_not_block(dnsbl: TestDnsServer) -> None:
    report = await checker(dnsbl).check([PBL], [])
    zen = next(r for r in report.results if r.zone == "zen.spamhaus.org")
    assert zen.verdict == "listed" and not zen.blocking
    assert report.blocking == []


async def test_ipv6_is_asked_in_nibble_format(dnsbl: TestDnsServer) -> None:
    report = await checker(dnsbl).check(["2001:db8::1"], [])
    zen = next(r for r in report.results if r.zone == "zen.spamhaus.org")
    assert zen.verdict == "listed" and zen.answer == ["127.0.0.3"]


async def test_domain_lists_and_their_reserved_answers(dnsbl: TestDnsServer) -> None:
    report = await checker(dnsbl).check([], ["spammy.test", "refused.test", "limited.test", "phish.test", "grey.test"])
    by = {(r.zone, r.subject): r for r in report.results}
    assert all(r.kind == "domain" for r in report.results)
    assert by[("dbl.spamhaus.org", "spammy.test")].verdict == "listed"
    assert by[("dbl.spamhaus.org", "spammy.test")].blocking
    assert by[("dbl.spamhaus.org", "refused.test")].verdict == "unknown"  # 127.0.1.255
    assert by[("dbl.spamhaus.org", "limited.test")].verdict == "unknown"  # 127.255.255.255
    phish = by[("multi.surbl.org", "phish.test")]  # 24 = 8 (phishing) + 16 (malware)
    assert phish.verdict == "listed" and len(phish.meanings) == 2
    grey = by[("multi.uribl.com", "grey.test")]
    assert grey.verdict == "listed" and not grey.blocking
    assert by[("multi.surbl.org", "spammy.test")].verdict == "clean"


async def test_refused_surbl_query_is_unknown(dnsbl: TestDnsServer) -> None:
    report = await checker(dnsbl).check([], ["blocked.test"])
    surbl = next(r for r in report.results if r.zone == "multi.surbl.org")
    assert surbl.verdict == "unknown" and "refused" in surbl.meanings[0]


async def test_answers_are_cached_for_their_ttl(dnsbl: TestDnsServer) -> None:
    now = [1000.0]
    cache: TtlCache[Answer] = TtlCache(clock=lambda: now[0])
    bl = BlocklistChecker(dnsbl.resolver(timeout=1.0), parse_entries(["zen.spamhaus.org:ip:blocking"]), cache=cache)
    name = "1.2.0.192.zen.spamhaus.org"

    def asked() -> int:
        return sum(1 for q in dnsbl.queries if q.name == name)

    before = asked()
    first = await bl.check([LISTED], [])
    assert asked() == before + 1 and not first.results[0].cached
    now[0] += 119  # the zone's TTL is 120 s
    second = await bl.check([LISTED], [])
    assert asked() == before + 1 and second.results[0].cached and second.results[0].verdict == "listed"
    now[0] += 2
    third = await bl.check([LISTED], [])
    assert asked() == before + 2 and not third.results[0].cached


async def test_nxdomain_is_cached_for_the_soa_minimum_and_timeouts_never(dnsbl: TestDnsServer) -> None:
    now = [0.0]
    cache: TtlCache[Answer] = TtlCache(clock=lambda: now[0])
    bl = BlocklistChecker(
        dnsbl.resolver(timeout=0.3), parse_entries(["zen.spamhaus.org:ip:blocking"]), cache=cache, timeout=1.0
    )
    await bl.check([CLEAN, SILENT], [])
    clean = cache.get("77.2.0.192.zen.spamhaus.org")
    assert clean is not None and clean.status == "nxdomain" and clean.ttl == 120  # SOA minimum of the zone
    assert cache.get("9.2.0.192.zen.spamhaus.org") is None


async def test_the_overall_deadline_bounds_a_check_of_silent_lists(dnsbl: TestDnsServer) -> None:
    silent = [f"192.0.2.{n}" for n in range(100, 130)]
    for ip in silent:
        dnsbl.silent_names.add(f"{'.'.join(reversed(ip.split('.')))}.zen.spamhaus.org")
    # Each query would wait up to 2 s; 30 of them through 2 at a time would take 30 s without the deadline.
    bl = BlocklistChecker(
        dnsbl.resolver(timeout=2.0), parse_entries(["zen.spamhaus.org:ip:blocking"]), concurrency=2, timeout=0.5
    )
    report = await asyncio.wait_for(bl.check(silent, []), timeout=5)
    assert report.status == "unknown"
    assert {r.verdict for r in report.results} == {"unknown"}
    assert len(report.results) == 30


class _SlowDns(asyncio.DatagramProtocol):
    """Answers like ``TestDnsServer`` but 50 ms late, counting the queries waiting at once."""

    def __init__(self, inner: TestDnsServer) -> None:
        self.inner = inner
        self.waiting = 0
        self.most = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        reply = self.inner.answer(data)

        def send() -> None:
            self.waiting -= 1
            if reply is not None and self.transport is not None:
                self.transport.sendto(reply, addr)

        asyncio.get_running_loop().call_later(0.05, send)


async def test_at_most_concurrency_queries_are_in_flight(dnsbl: TestDnsServer) -> None:
    loop = asyncio.get_running_loop()
    slow = _SlowDns(dnsbl)
    transport, _ = await loop.create_datagram_endpoint(lambda: slow, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        from nimbus_api.kit.egress import make_resolver

        bl = BlocklistChecker(
            make_resolver([f"127.0.0.1:{port}"], 2.0), parse_entries(["zen.spamhaus.org:ip:blocking"]), concurrency=3
        )
        report = await bl.check([f"198.51.100.{n}" for n in range(1, 13)], [])
        assert len(report.results) == 12 and report.status == "clean"
        assert slow.most == 3
    finally:
        transport.close()


def test_settings_entries_parse_and_unknown_zones_read_generically() -> None:
    lists = parse_entries(["zen.spamhaus.org:ip:info", "bl.example.test:ip:blocking"])
    assert lists[0].name == "Spamhaus ZEN" and not lists[0].blocking and lists[0].codes
    generic = lists[1]
    assert generic.read(["127.0.0.2"]).verdict == "listed" and generic.read(["127.0.0.2"]).blocking
    assert generic.read(["127.0.0.1"]).verdict == "unknown"
    assert generic.read(["127.255.255.254"]).verdict == "unknown"
    assert generic.read(["10.1.2.3"]).verdict == "unknown"  # a rewriting resolver's answer is no listing
    with pytest.raises(ValueError):
        parse_entries(["zen.spamhaus.org:ip"])
