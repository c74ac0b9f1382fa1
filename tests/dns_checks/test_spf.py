"""The SPF parser, macro expansion, ``check_host`` and ``analyze_spf``, on an in-memory DNS.

``FakeDns`` implements the ``spf.Lookup`` protocol from a dict, so edge cases need no zone files:
names it holds answer their records or NODATA, others NXDOMAIN; names in ``timeouts``/``errors`` fail.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from nimbus_api.dns_checks.spf import (
    DnsAnswer,
    MacroContext,
    SpfSyntaxError,
    analyze_spf,
    check_host,
    expand_macros,
    is_spf_record,
    parse_spf,
)


@dataclass
class FakeDns:
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    timeouts: set[str] = field(default_factory=set)
    errors: set[str] = field(default_factory=set)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, rdtype: str, *values: str) -> FakeDns:
        self.records.setdefault((name, rdtype), []).extend(values)
        return self

    async def __call__(self, name: str, rdtype: str) -> DnsAnswer:
        name = name.rstrip(".").lower()
        self.asked.append((name, rdtype))
        if name in self.timeouts:
            return DnsAnswer("timeout")
        if name in self.errors:
            return DnsAnswer("error")
        if (name, rdtype) in self.records:
            return DnsAnswer("ok", tuple(self.records[(name, rdtype)]))
        if any(n == name for n, _ in self.records):
            return DnsAnswer("nodata")
        return DnsAnswer("nxdomain")


# --- recognizing and parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=spf1", True),
        ("v=spf1 -all", True),
        ("V=SPF1 -all", True),
        ("v=spf10 -all", False),
        ("v=spf1-all", False),
        (" v=spf1 -all", False),
        ("spf2.0/pra -all", False),
        ("google-site-verification=abc", False),
    ],
)
def test_is_spf_record(text: str, expected: bool) -> None:
    assert is_spf_record(text) is expected


def test_parse_terms_qualifiers_and_cidrs() -> None:
    record = parse_spf(
        "v=spf1  +a -mx:mail.example.com/24//64 ~ip4:192.0.2.0/24 ?ip6:2001:db8::/32 "
        "include:_spf.example.com exists:%{i}._spf.%{d} ptr:example.com ip4:192.0.2.1 a//96 all "
        "redirect=_spf.example.net exp=explain.%{d} foo.bar=baz%{d}  "
    )
    names = [(m.qualifier, m.name) for m in record.mechanisms]
    assert names == [
        ("+", "a"),
        ("-", "mx"),
        ("~", "ip4"),
        ("?", "ip6"),
        ("+", "include"),
        ("+", "exists"),
        ("+", "ptr"),
        ("+", "ip4"),
        ("+", "a"),
        ("+", "all"),
    ]
    mx = record.mechanisms[1]
    assert (mx.domain_spec, mx.cidr4, mx.cidr6) == ("mail.example.com", 24, 64)
    assert record.mechanisms[2].network == ipaddress.ip_network("192.0.2.0/24")
    assert record.mechanisms[7].network == ipaddress.ip_network("192.0.2.1/32")
    assert (record.mechanisms[8].cidr4, record.mechanisms[8].cidr6) == (32, 96)
    assert record.redirect == "_spf.example.net"
    assert record.exp == "explain.%{d}"
    assert record.unknown_modifiers == (("foo.bar", "baz%{d}"),)
    assert record.has_all and not record.redirect_applies


def test_names_are_case_insensitive_and_host_bits_allowed() -> None:
    record = parse_spf("v=spf1 IP4:192.0.2.77/24 Include:example.com REDIRECT=example.net")
    assert [m.name for m in record.mechanisms] == ["ip4", "include"]
    assert record.mechanisms[0].network == ipaddress.ip_network("192.0.2.0/24")
    assert record.redirect == "example.net"
    assert record.redirect_applies


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("v=spf1 ipv4:192.0.2.1 -all", "unknown mechanism"),
        ("v=spf1 ip4:192.0.2.300 -all", "not an IPv4 address"),
        ("v=spf1 ip4:192.0.02.1 -all", "not an IPv4 address"),  # no leading zeros
        ("v=spf1 ip4:192.0.2.0/33", "CIDR"),
        ("v=spf1 ip4:192.0.2.0/08", "CIDR"),
        ("v=spf1 ip4", "needs ':<address>'"),
        ("v=spf1 ip6:2001:db8::/129", "CIDR"),
        ("v=spf1 ip6:192.0.2.1", "not an IPv6 address"),
        ("v=spf1 ip6:fe80::1%eth0", "not an IPv6 address"),
        ("v=spf1 a/33", "CIDR"),
        ("v=spf1 mx//129", "CIDR"),
        ("v=spf1 a:", "empty domain"),
        ("v=spf1 include", "needs ':<domain>'"),
        ("v=spf1 include:", "needs ':<domain>'"),
        ("v=spf1 include:localhost", "top-level label"),
        ("v=spf1 a:192.0.2.1", "top-level label"),  # an address is not a domain
        ("v=spf1 exists:%{x}.example.com", "unknown macro letter"),
        ("v=spf1 exists:%{c}.example.com", "unknown macro letter"),  # c only in explanations
        ("v=spf1 exists:%{d0}.example.com", "must not be zero"),
        ("v=spf1 exists:100%.example.com", "'%'"),
        ("v=spf1 all:example.com", "takes no argument"),
        ("v=spf1 -redirect=example.com", "unknown mechanism"),
        ("v=spf1 redirect=a.example.com redirect=b.example.com", "more than once"),
        ("v=spf1 exp=a.example.com exp=b.example.com", "more than once"),
        ("v=spf1 redirect=", "empty domain"),
        ("v=spf1 foo=%{z}", "unknown macro letter"),
        ("v=spf1 ptr:", "ptr"),
        ("v=spf1 a-b", "not a valid term"),
        ("v=spf1 ip4:192.0.2.1 \u00e9", "non-ASCII"),
        ("v=spf1 +", "not a mechanism or modifier"),
    ],
)
def test_syntax_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpfSyntaxError, match=None) as info:
        parse_spf(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1",
        "v=spf1 ",
        "v=spf1 -all ",
        "v=spf1 a:mail.example.com.",  # final dot
        "v=spf1 a:mail.1-2.",  # toplabel with a hyphen may be numeric
        "v=spf1 exists:%{ir}.%{v}._spf.%{d2}",  # ends in a macro
        "v=spf1 exists:%{l1r-}.lp._spf.%{d2}",
        "v=spf1 include:%{d}%%.example.com",
        "v=spf1 unknown-mod=anything.goes.here -all",
        "v=spf1 ip6:::ffff:192.0.2.1",
    ],
)
def test_valid_edge_cases(text: str) -> None:
    parse_spf(text)


# --- macros (RFC 7208 7.4 examples) -------------------------------------------------------------------


V4 = MacroContext(
    sender="strong-bad@email.example.com",
    ip=ipaddress.ip_address("192.0.2.3"),
    domain="email.example.com",
    helo="mx.example.org",
)
V6 = MacroContext(
    sender="strong-bad@email.example.com",
    ip=ipaddress.ip_address("2001:db8::cb01"),
    domain="email.example.com",
    helo="mx.example.org",
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%{h}", "mx.example.org"),
        ("%%%_%-", "% %20"),
        ("%{S}", "strong-bad%40email.example.com"),
    ],
)
def test_macro_expansion_rfc_examples(spec: str, expected: str) -> None:
    assert expand_macros(spec, V4) == expected


def test_macro_expansion_ipv6() -> None:
    assert (
        expand_macros("%{ir}.%{v}._spf.%{d2}", V6)
        == "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )


# --- check_host -----------------------------------------------------------------------------------------


def zone() -> FakeDns:
    dns = FakeDns()
    dns.add("example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net a:relay.example.com/30 mx ~all")
    dns.add("example.com", "MX", "10 mx1.example.com.", "20 mx2.example.com.")
    dns.add("mx1.example.com", "A", "198.51.100.10")
    dns.add("mx2.example.com", "AAAA", "2001:db8:1::10")
    dns.add("relay.example.com", "A", "203.0.113.8")
    dns.add("_spf.example.net", "TXT", "v=spf1 ip6:2001:db8:ffff::/48 -all")
    return dns


@pytest.mark.parametrize(
    ("ip", "result", "term"),
    [
        ("192.0.2.44", "pass", "ip4:192.0.2.0/24"),
        ("2001:db8:ffff::1", "pass", "include:_spf.example.net"),
        ("203.0.113.9", "pass", "a:relay.example.com/30"),  # inside relay's /30
        ("203.0.113.12", "softfail", "~all"),  # outside it
        ("198.51.100.10", "pass", "mx"),
        ("2001:db8:1::10", "pass", "mx"),
        ("::ffff:192.0.2.9", "pass", "ip4:192.0.2.0/24"),
        ("198.51.100.11", "softfail", "~all"),
    ],
)
async def test_check_host_results(ip: str, result: str, term: str) -> None:
    outcome = await check_host(ip, "example.com", zone())
    assert (outcome.result, outcome.mechanism) == (result, term), outcome.detail


async def test_check_host_qualifiers_and_default_neutral() -> None:
    dns = FakeDns()
    dns.add("fail.test", "TXT", "v=spf1 -ip4:192.0.2.1 ?ip4:192.0.2.2 ~ip4:192.0.2.3 +ip4:192.0.2.4")
    assert (await check_host("192.0.2.1", "fail.test", dns)).result == "fail"
    assert (await check_host("192.0.2.2", "fail.test", dns)).result == "neutral"
    assert (await check_host("192.0.2.3", "fail.test", dns)).result == "softfail"
    assert (await check_host("192.0.2.4", "fail.test", dns)).result == "pass"
    nothing = await check_host("192.0.2.5", "fail.test", dns)
    assert (nothing.result, nothing.mechanism) == ("neutral", None)


async def test_check_host_none_and_errors() -> None:
    dns = FakeDns()
    dns.add("nospf.test", "TXT", "hello")
    dns.add("two.test", "TXT", "v=spf1 -all", "v=spf1 +all")
    dns.add("bad.test", "TXT", "v=spf1 ip4:1.2.3")
    dns.timeouts.add("slow.test")
    assert (await check_host("192.0.2.1", "nospf.test", dns)).result == "none"
    assert (await check_host("192.0.2.1", "missing.test", dns)).result == "none"
    assert (await check_host("192.0.2.1", "localhost", dns)).result == "none"  # not a multi-label name
    assert (await check_host("192.0.2.1", "two.test", dns)).result == "permerror"
    assert (await check_host("192.0.2.1", "bad.test", dns)).result == "permerror"
    assert (await check_host("192.0.2.1", "slow.test", dns)).result == "temperror"


async def test_include_result_mapping() -> None:
    dns = FakeDns()
    dns.add("inc-fail.test", "TXT", "v=spf1 include:f.test ip4:192.0.2.1 -all")
    dns.add("f.test", "TXT", "v=spf1 -all")  # fail in an include is "no match", evaluation goes on
    dns.add("inc-none.test", "TXT", "v=spf1 include:none.test -all")
    dns.add("inc-perm.test", "TXT", "v=spf1 include:perm.test -all")
    dns.add("perm.test", "TXT", "v=spf1 bogus")
    dns.add("inc-temp.test", "TXT", "v=spf1 include:temp.test -all")
    dns.timeouts.add("temp.test")
    assert (await check_host("192.0.2.1", "inc-fail.test", dns)).result == "pass"
    assert (await check_host("192.0.2.1", "inc-none.test", dns)).result == "permerror"
    assert (await check_host("192.0.2.1", "inc-perm.test", dns)).result == "permerror"
    assert (await check_host("192.0.2.1", "inc-temp.test", dns)).result == "temperror"


async def test_redirect() -> None:
    dns = FakeDns()
    dns.add("r.test", "TXT", "v=spf1 ip4:192.0.2.1 redirect=target.test")
    dns.add("target.test", "TXT", "v=spf1 ip4:192.0.2.2 -all")
    dns.add("r-none.test", "TXT", "v=spf1 redirect=none.test")
    dns.add("r-all.test", "TXT", "v=spf1 ?all redirect=target.test")
    assert (await check_host("192.0.2.1", "r.test", dns)).result == "pass"
    redirected = await check_host("192.0.2.2", "r.test", dns)
    assert (redirected.result, redirected.lookups) == ("pass", 1)
    assert (await check_host("192.0.2.3", "r.test", dns)).result == "fail"
    assert (await check_host("192.0.2.3", "r-none.test", dns)).result == "permerror"
    assert (await check_host("192.0.2.2", "r-all.test", dns)).result == "neutral"  # redirect ignored


async def test_exists_with_macros_and_a_query_even_for_ipv6() -> None:
    dns = FakeDns()
    dns.add("ex.test", "TXT", "v=spf1 exists:%{ir}.%{v}.allow.ex.test -all")
    dns.add("1.2.0.192.in-addr.allow.ex.test", "A", "127.0.0.2")
    six = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.allow.ex.test"
    dns.add(six, "A", "127.0.0.2")
    assert (await check_host("192.0.2.1", "ex.test", dns)).result == "pass"
    assert (await check_host("2001:db8::1", "ex.test", dns)).result == "pass"
    assert (await check_host("192.0.2.9", "ex.test", dns)).result == "fail"


async def test_ptr() -> None:
    dns = FakeDns()
    dns.add("ptr.test", "TXT", "v=spf1 ptr -all")
    dns.add("1.2.0.192.in-addr.arpa", "PTR", "mail.ptr.test.", "other.example.")
    dns.add("mail.ptr.test", "A", "192.0.2.1")
    dns.add("2.2.0.192.in-addr.arpa", "PTR", "spoof.ptr.test.")  # forward lookup does not confirm
    dns.add("spoof.ptr.test", "A", "203.0.113.1")
    dns.errors.add("3.2.0.192.in-addr.arpa")  # an error is "no match", not temperror
    assert (await check_host("192.0.2.1", "ptr.test", dns)).result == "pass"
    assert (await check_host("192.0.2.2", "ptr.test", dns)).result == "fail"
    assert (await check_host("192.0.2.3", "ptr.test", dns)).result == "fail"


async def test_lookup_limit_counts_nested_terms() -> None:
    dns = FakeDns()
    includes = " ".join(f"include:i{n}.test" for n in range(11))
    dns.add("many.test", "TXT", f"v=spf1 {includes} -all")
    for n in range(11):
        dns.add(f"i{n}.test", "TXT", f"v=spf1 ip4:10.0.0.{n} -all")
    first = await check_host("10.0.0.0", "many.test", dns)  # matches early: the limit is never reached
    assert (first.result, first.lookups) == ("pass", 1)
    late = await check_host("10.0.0.10", "many.test", dns)
    assert late.result == "permerror"
    assert "more than 10 DNS lookups" in late.detail


async def test_void_lookup_limit() -> None:
    dns = FakeDns()
    dns.add("void.test", "TXT", "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all")
    result = await check_host("192.0.2.1", "void.test", dns)
    assert (result.result, result.void_lookups) == ("permerror", 3)
    dns.add("void2.test", "TXT", "v=spf1 a:n1.void.test mx:n2.void.test -all")
    assert (await check_host("192.0.2.1", "void2.test", dns)).result == "fail"


async def test_mx_with_more_than_ten_hosts() -> None:
    dns = FakeDns()
    dns.add("mxs.test", "TXT", "v=spf1 mx -all")
    dns.add("mxs.test", "MX", *(f"{n} mx{n}.mxs.test." for n in range(11)))
    assert (await check_host("192.0.2.1", "mxs.test", dns)).result == "permerror"


async def test_include_loop_is_a_permerror() -> None:
    dns = FakeDns()
    dns.add("a.test", "TXT", "v=spf1 include:b.test -all")
    dns.add("b.test", "TXT", "v=spf1 include:a.test -all")
    result = await check_host("192.0.2.1", "a.test", dns)
    assert result.result == "permerror"
    assert "loop" in result.detail


# --- analyze_spf ---------------------------------------------------------------------------------------


async def test_analysis_counts_the_whole_tree() -> None:
    result = await analyze_spf("example.com", zone())
    assert result.status == "ok"
    assert (result.lookups, result.void_lookups) == (3, 0)  # include, a, mx
    assert result.followed == ["_spf.example.net"]
    assert result.warnings == []


async def test_analysis_prefetches_concurrently_and_follows_in_order() -> None:
    dns = FakeDns()
    dns.add("root.test", "TXT", "v=spf1 include:b.test include:a.test -all")
    dns.add("a.test", "TXT", "v=spf1 -all")
    dns.add("b.test", "TXT", "v=spf1 -all")
    result = await analyze_spf("root.test", dns)
    assert result.followed == ["b.test", "a.test"]
    assert dns.asked == [("root.test", "TXT"), ("b.test", "TXT"), ("a.test", "TXT")]


async def test_analysis_redirect_counts_unless_all_present() -> None:
    dns = FakeDns()
    dns.add("r.test", "TXT", "v=spf1 mx redirect=t.test")
    dns.add("r.test", "MX", "10 mx.r.test.")
    dns.add("t.test", "TXT", "v=spf1 a -all")
    dns.add("t.test", "A", "192.0.2.1")
    dns.add("r-all.test", "TXT", "v=spf1 -all redirect=missing.test")
    redirected = await analyze_spf("r.test", dns)
    assert (redirected.status, redirected.lookups, redirected.followed) == ("ok", 3, ["t.test"])
    ignored = await analyze_spf("r-all.test", dns)
    assert (ignored.status, ignored.lookups) == ("ok", 0)
    assert any("ignored" in w for w in ignored.warnings)


@pytest.mark.parametrize(
    ("records", "status", "fragment"),
    [
        ({}, "missing", "does not exist"),
        ({("x.test", "TXT"): ["hello"]}, "missing", "no SPF record"),
        ({("x.test", "TXT"): ["v=spf1 -all", "v=spf1 a -all"]}, "invalid", "2 SPF records"),
        ({("x.test", "TXT"): ["v=spf1 include:y.test -all"], ("y.test", "TXT"): ["v=spf1 bad"]}, "invalid", "y.test"),
        ({("x.test", "TXT"): ["v=spf1 include:y.test -all"], ("y.test", "A"): ["192.0.2.1"]}, "invalid", "no SPF"),
        ({("x.test", "TXT"): ["v=spf1 include:gone.test -all"]}, "invalid", "does not exist"),
        ({("x.test", "TXT"): ["v=spf1 redirect=gone.test"]}, "invalid", "redirect:gone.test"),
        ({("x.test", "TXT"): ["v=spf1 include:x.test -all"]}, "invalid", "x.test -> x.test"),
        ({("x.test", "TXT"): ["v=spf1 a:n1.x.test a:n2.x.test exists:n3.x.test -all"]}, "invalid", "void"),
    ],
)
async def test_analysis_failures(records: dict[tuple[str, str], list[str]], status: str, fragment: str) -> None:
    result = await analyze_spf("x.test", FakeDns(records=dict(records)))
    assert result.status == status
    assert fragment in result.detail


async def test_analysis_timeout_in_an_include() -> None:
    dns = FakeDns(timeouts={"slow.test"})
    dns.add("x.test", "TXT", "v=spf1 include:slow.test -all")
    result = await analyze_spf("x.test", dns)
    assert result.status == "unanswered"
    assert "slow.test" in result.detail


async def test_analysis_stops_descending_once_over_the_limit() -> None:
    dns = FakeDns()
    # a binary tree of includes: without a stop, walking it would cost 2**12 records
    for depth in range(12):
        for node in range(2**depth):
            name = f"n{depth}-{node}.test"
            dns.add(
                name, "TXT", f"v=spf1 include:n{depth + 1}-{2 * node}.test include:n{depth + 1}-{2 * node + 1}.test"
            )
    result = await analyze_spf("n0-0.test", dns)
    assert result.status == "invalid"
    assert "at least" in result.detail and "limit is 10" in result.detail
    assert len(dns.asked) < 60


async def test_analysis_macros_are_counted_not_followed() -> None:
    dns = FakeDns()
    dns.add("m.test", "TXT", "v=spf1 include:%{ir}.m.test exists:%{i}.e.m.test ptr -all")
    result = await analyze_spf("m.test", dns)
    assert (result.status, result.lookups) == ("ok", 3)
    assert any("macros" in w for w in result.warnings)
    assert any("ptr" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ("v=spf1 +all", "+all"),
        ("v=spf1 all", "+all"),
        ("v=spf1 ip4:192.0.2.1 ?all", "?all"),
        ("v=spf1 ip4:192.0.2.1", "no 'all'"),
    ],
)
async def test_analysis_warnings(record: str, fragment: str) -> None:
    result = await analyze_spf("w.test", FakeDns().add("w.test", "TXT", record))
    assert result.status == "ok"
    assert any(fragment in w for w in result.warnings)
