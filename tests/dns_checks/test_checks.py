"""``run_dns_checks`` against a real DNS server: every case the product must tell apart.

Each case is its own zone under ``.test`` (two labels, so that the DMARC organizational-domain fallback
of one case never finds another case's record). ``domain_zone`` builds a domain that passes everything;
a case overrides the one part it breaks. The tests at the end exercise the test DNS server itself.
"""

from __future__ import annotations

import base64
import json
import time

import dns.asyncresolver
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from nimbus_api.dns_checks import DEFAULT_DKIM_SELECTORS, DnsReport, run_dns_checks
from tests.servers.dns_server import TestDnsServer, make_zone, serve_dns, txt

SELECTOR = "nimbus"  # deliberately not one of DEFAULT_DKIM_SELECTORS


def _spki_b64(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


RSA_2048 = _spki_b64(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
RSA_1024 = _spki_b64(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
# cryptography will not generate a 512-bit key, but loads one: the high half of a 1024-bit modulus.
_n = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers().n >> 512
RSA_512 = _spki_b64(rsa.RSAPublicNumbers(65537, _n | 1).public_key())
ED25519 = base64.b64encode(
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
).decode()

GOOD_MX = "@ MX 10 mx1\n@ MX 20 mx2\nmx1 A 127.0.0.10\nmx2 A 127.0.0.11"
GOOD_SPF = '@ TXT "v=spf1 mx include:_spf.provider.test -all"'
GOOD_DKIM = f"{SELECTOR}._domainkey TXT {txt('v=DKIM1; k=rsa; p=' + RSA_2048)}"
GOOD_DMARC = '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"'


def domain_zone(
    origin: str,
    *,
    mx: str = GOOD_MX,
    spf: str = GOOD_SPF,
    dkim: str = GOOD_DKIM,
    dmarc: str = GOOD_DMARC,
    extra: str = "",
) -> tuple[str, str]:
    """A domain that passes everything, except the parts given (``""`` leaves a part out)."""
    return make_zone(origin, _lines("\n".join((mx, spf, dkim, dmarc, extra)))), origin


def _lines(text: str) -> str:
    """Zone lines without indentation (a leading blank would mean "same owner as the line before")."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _includes(origin: str, names: list[str], tail: str = "-all") -> str:
    return " ".join(["v=spf1", *(f"include:{n}.{origin}" for n in names), tail])


ZONES: list[tuple[str, str]] = [
    (
        make_zone(
            "provider.test",
            _lines(
                """
                _spf TXT "v=spf1 ip4:192.0.2.0/24 include:_spf2.provider.test ~all"
                _spf2 TXT "v=spf1 ip6:2001:db8::/32 ip4:127.0.0.2 -all"
                """
            )
            + "\ns1.domainkey.u1 TXT "
            + txt("v=DKIM1; k=rsa; p=" + RSA_2048),
        ),
        "provider.test",
    ),
    domain_zone(
        "good.test",
        extra="alias CNAME mx1\n" + "\n".join("big TXT " + txt(f"filler-{i}-" + "x" * 200) for i in range(6)),
    ),
    # MX
    domain_zone("nomx.test", mx="@ A 127.0.0.20"),
    domain_zone("nomx-noaddr.test", mx=""),
    domain_zone("nullmx.test", mx="@ MX 0 ."),
    domain_zone("deadmx.test", mx="@ MX 10 gone"),
    # SPF
    domain_zone("nospf.test", spf=""),
    domain_zone("twospf.test", spf='@ TXT "v=spf1 mx -all"\n@ TXT "v=spf1 include:_spf.provider.test -all"'),
    domain_zone("spfsyntax.test", spf='@ TXT "v=spf1 ipv4:192.0.2.1 -all"'),
    domain_zone(
        "spf11.test",
        spf=f'@ TXT "{_includes("spf11.test", ["i1", "i2"])}"',
        extra=f"""
        i1 TXT "{_includes("spf11.test", ["i3", "i4", "i5"])}"
        i2 TXT "{_includes("spf11.test", ["i6", "i7", "i8", "i9"])}"
        i3 TXT "v=spf1 ip4:192.0.2.3 -all"
        i4 TXT "v=spf1 ip4:192.0.2.4 -all"
        i5 TXT "v=spf1 ip4:192.0.2.5 -all"
        i6 TXT "v=spf1 ip4:192.0.2.6 -all"
        i7 TXT "v=spf1 ip4:192.0.2.7 -all"
        i8 TXT "v=spf1 ip4:192.0.2.8 -all"
        i9 TXT "v=spf1 a mx -all"
        i9 A 127.0.0.9
        i9 MX 10 mx1
        """,
    ),
    domain_zone(
        "spf10.test",
        spf=f'@ TXT "{_includes("spf10.test", ["i1", "i2"])}"',
        extra=f"""
        i1 TXT "{_includes("spf10.test", ["i3", "i4", "i5"])}"
        i2 TXT "{_includes("spf10.test", ["i6", "i7", "i8", "i9"])}"
        i3 TXT "v=spf1 ip4:192.0.2.3 -all"
        i4 TXT "v=spf1 ip4:192.0.2.4 -all"
        i5 TXT "v=spf1 ip4:192.0.2.5 -all"
        i6 TXT "v=spf1 ip4:192.0.2.6 -all"
        i7 TXT "v=spf1 ip4:192.0.2.7 -all"
        i8 TXT "v=spf1 ip4:192.0.2.8 -all"
        i9 TXT "v=spf1 a -all"
        i9 A 127.0.0.9
        """,
    ),
    domain_zone(
        "spfloop.test",
        spf='@ TXT "v=spf1 include:l1.spfloop.test -all"',
        extra='l1 TXT "v=spf1 include:l2.spfloop.test -all"\nl2 TXT "v=spf1 include:spfloop.test -all"',
    ),
    domain_zone(
        "spfnoinclude.test", spf='@ TXT "v=spf1 include:nothing.spfnoinclude.test -all"', extra="nothing A 127.0.0.1"
    ),
    domain_zone("spfsplit.test", spf="@ TXT " + txt("v=spf1 mx include:_spf.provider.test -all", chunk=10)),
    domain_zone("spfplusall.test", spf='@ TXT "v=spf1 +all"'),
    domain_zone(
        "auth.test",
        spf='@ TXT "v=spf1 ip4:127.0.0.1 include:_spf.provider.test a:relay.auth.test mx -all"',
        extra="relay A 127.0.0.3",
    ),
    # DKIM
    domain_zone("dkimguess.test", dkim=f"selector2._domainkey TXT {txt('v=DKIM1; k=rsa; p=' + RSA_2048)}"),
    domain_zone("dkimnone.test", dkim=""),
    domain_zone("dkimrevoked.test", dkim=f'{SELECTOR}._domainkey TXT "v=DKIM1; k=rsa; p="'),
    domain_zone("dkimbase64.test", dkim=f'{SELECTOR}._domainkey TXT "v=DKIM1; k=rsa; p=not*base64!"'),
    domain_zone("dkimgarbage.test", dkim=f'{SELECTOR}._domainkey TXT "v=DKIM1; k=rsa; p=aGVsbG8gd29ybGQ="'),
    domain_zone("dkimsplit.test", dkim=f"{SELECTOR}._domainkey TXT {txt('v=DKIM1; k=rsa; p=' + RSA_2048, chunk=61)}"),
    domain_zone("dkimed.test", dkim=f'{SELECTOR}._domainkey TXT "v=DKIM1; k=ed25519; p={ED25519}"'),
    domain_zone("dkimweak.test", dkim=f'{SELECTOR}._domainkey TXT "v=DKIM1; k=rsa; p={RSA_512}"'),
    domain_zone("dkim1024.test", dkim=f'{SELECTOR}._domainkey TXT "v=DKIM1; k=rsa; p={RSA_1024}"'),
    domain_zone("dkimcname.test", dkim="s1._domainkey CNAME s1.domainkey.u1.provider.test."),
    domain_zone("dkimwild.test", dkim="", extra='*._domainkey TXT "v=spf1 -all"'),
    # DMARC
    domain_zone("nodmarc.test", dmarc=""),
    domain_zone("dmarcnop.test", dmarc='_dmarc TXT "v=DMARC1; rua=mailto:dmarc@example.test"'),
    domain_zone("dmarcbadp.test", dmarc='_dmarc TXT "v=DMARC1; p=block"'),
    domain_zone(
        "twodmarc.test", dmarc='_dmarc TXT "v=DMARC1; p=reject"\n_dmarc TXT "v=DMARC1; p=none; rua=mailto:a@b.test"'
    ),
    domain_zone("dmarcnone.test", dmarc='_dmarc TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.test"'),
    domain_zone(
        "orgdmarc.test",
        mx="sub MX 10 mx1.sub\nmx1.sub A 127.0.0.12",
        spf='sub TXT "v=spf1 mx -all"',
        dkim=f"{SELECTOR}._domainkey.sub TXT {txt('v=DKIM1; p=' + RSA_2048)}",
        dmarc='_dmarc TXT "v=DMARC1; p=quarantine; sp=reject; rua=mailto:dmarc@example.test"',
    ),
    # several failures at once, and timeouts
    domain_zone("multifail.test", spf='@ TXT "v=spf1 ip4:300.1.2.3 -all"', dmarc=""),
    domain_zone("silent.test"),
    domain_zone("silentdkim.test"),
    domain_zone("silentparts.test"),
]

SILENT = {"silent.test", f"{SELECTOR}._domainkey.silentdkim.test", "_dmarc.silentparts.test"}
SILENT |= {f"{SELECTOR}._domainkey.silentparts.test"}


@pytest.fixture(scope="module", autouse=True)
def zones(dns_server: TestDnsServer) -> None:
    for text, origin in ZONES:
        dns_server.add_zone(text, origin)
    dns_server.silent_names |= SILENT


async def check(
    resolver: dns.asyncresolver.Resolver, domain: str, selector: str | None = SELECTOR, **kwargs: object
) -> DnsReport:
    return await run_dns_checks(domain, resolver=resolver, dkim_selector=selector, **kwargs)  # type: ignore[arg-type]


# --- the good domain ---------------------------------------------------------------------------------


async def test_good_domain_passes(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "good.test")
    assert report.status == "passed", report
    assert report.code is None
    assert report.warnings == []
    records = report.records
    assert records["mx"]["hosts"] == [
        {"preference": 10, "host": "mx1.good.test"},
        {"preference": 20, "host": "mx2.good.test"},
    ]
    assert records["spf"]["record"] == "v=spf1 mx include:_spf.provider.test -all"
    assert records["spf"]["lookups"] == 3  # mx, include:_spf, and _spf's include:_spf2
    assert records["spf"]["followed"] == ["_spf.provider.test", "_spf2.provider.test"]
    assert (records["dkim"]["selector"], records["dkim"]["selectors_tried"]) == (SELECTOR, [SELECTOR])
    assert (records["dkim"]["key_type"], records["dkim"]["key_bits"]) == ("rsa", 2048)
    assert records["dmarc"]["policy"] == "reject"
    assert records["dmarc"]["organizational"] is False
    assert all(part["status"] == "passed" for part in records.values())
    assert "good.test" in report.detail
    json.dumps(records)  # goes out as the check's data
    assert report.duration_ms >= 0


async def test_domain_is_normalized(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "  Good.TEST. ")
    assert report.status == "passed"


async def test_invalid_domain_name(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "a..b")
    assert (report.status, report.code) == ("failed", "dns.mx_missing")
    assert "not a valid domain" in report.detail
    assert [r["code"] for r in report.records.values()] == [
        "dns.mx_missing",
        "dns.spf_missing",
        "dns.dkim_missing",
        "dns.dmarc_missing",
    ]


@pytest.mark.parametrize("selector", ["NIMBUS", "nimbus._domainkey", "nimbus._domainkey.good.test."])
async def test_dkim_selector_as_pasted(resolver: dns.asyncresolver.Resolver, selector: str) -> None:
    report = await check(resolver, "good.test", selector=selector)
    assert report.status == "passed"
    assert report.records["dkim"]["selector"] == SELECTOR


# --- MX ------------------------------------------------------------------------------------------------


async def test_missing_mx_with_address_requires_explicit_mx(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "nomx.test")
    assert report.code == "dns.mx_missing"
    assert "implicit MX" in report.detail and "explicit MX" in report.detail
    assert report.records["spf"]["status"] == "passed"


async def test_missing_mx_without_address(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "nomx-noaddr.test")
    assert report.code == "dns.mx_missing"
    assert "no MX record" in report.detail and "implicit" not in report.detail


async def test_null_mx(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "nullmx.test")
    assert report.code == "dns.mx_missing"
    assert "null MX" in report.detail and "accepts no mail" in report.detail
    assert report.records["mx"]["null_mx"] is True


async def test_mx_host_without_address(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "deadmx.test")
    assert report.code == "dns.mx_missing"
    assert "gone.deadmx.test" in report.detail


async def test_nxdomain_domain(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "ghost.nodmarc.test")
    assert report.status == "failed"
    assert report.code == "dns.mx_missing"
    assert report.records["mx"]["detail"].startswith("ghost.nodmarc.test: domain does not exist")
    assert report.records["spf"]["code"] == "dns.spf_missing"
    assert report.records["dkim"]["code"] == "dns.dkim_missing"


# --- SPF -----------------------------------------------------------------------------------------------


async def test_no_spf(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "nospf.test")
    assert report.code == "dns.spf_missing"
    assert "no SPF record" in report.detail


async def test_two_spf_records(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "twospf.test")
    assert report.code == "dns.spf_invalid"
    assert "2 SPF records" in report.detail


async def test_spf_syntax_error(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "spfsyntax.test")
    assert report.code == "dns.spf_invalid"
    assert "ipv4" in report.detail and "unknown mechanism" in report.detail
    assert report.records["spf"]["record"] == "v=spf1 ipv4:192.0.2.1 -all"


async def test_spf_eleven_lookups_through_nested_includes(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "spf11.test")
    assert report.code == "dns.spf_invalid"
    assert "11 DNS lookups" in report.detail and "limit is 10" in report.detail
    assert report.records["spf"]["lookups"] == 11


async def test_spf_ten_lookups_is_the_limit(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "spf10.test")
    assert report.status == "passed", report.detail
    assert report.records["spf"]["lookups"] == 10


async def test_spf_include_loop(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "spfloop.test")
    assert report.code == "dns.spf_invalid"
    assert "loop" in report.detail
    assert "spfloop.test -> l1.spfloop.test -> l2.spfloop.test -> spfloop.test" in report.detail


async def test_spf_include_without_record(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "spfnoinclude.test")
    assert report.code == "dns.spf_invalid"
    assert "include:nothing.spfnoinclude.test has no SPF record" in report.detail


async def test_spf_split_txt_strings_are_joined(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "spfsplit.test", sending_ips=["127.0.0.2"])
    assert report.status == "passed"
    assert report.records["spf"]["record"] == "v=spf1 mx include:_spf.provider.test -all"
    assert report.records["spf"]["sending_ips"] == {"127.0.0.2": "pass"}


async def test_spf_plus_all_is_a_warning(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "spfplusall.test")
    assert report.status == "passed"
    assert any("+all" in w for w in report.warnings)


async def test_spf_not_authorizing_the_smtp_host_is_a_warning(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "auth.test", sending_ips=["198.51.100.7"])
    assert report.status == "passed"
    assert report.records["spf"]["sending_ips"] == {"198.51.100.7": "fail"}
    [warning] = report.warnings
    assert "does not authorize 198.51.100.7" in warning and "fail" in warning


@pytest.mark.parametrize(
    ("ip", "via"),
    [
        ("127.0.0.1", "ip4"),
        ("127.0.0.2", "include (nested)"),
        ("2001:db8::5", "include (ip6)"),
        ("127.0.0.3", "a"),
        ("127.0.0.10", "mx"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
    ],
)
async def test_spf_authorizing_the_smtp_host(resolver: dns.asyncresolver.Resolver, ip: str, via: str) -> None:
    report = await check(resolver, "auth.test", sending_ips=[ip])
    assert report.status == "passed"
    assert report.warnings == [], via
    assert report.records["spf"]["sending_ips"] == {ip: "pass"}


async def test_spf_each_sending_ip_is_checked(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "auth.test", sending_ips=["127.0.0.1", "203.0.113.9", "not-an-ip"])
    assert report.records["spf"]["sending_ips"] == {"127.0.0.1": "pass", "203.0.113.9": "fail"}
    assert len(report.warnings) == 1 and "203.0.113.9" in report.warnings[0]


# --- DKIM ----------------------------------------------------------------------------------------------


async def test_dkim_found_by_guessing(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimguess.test", selector=None)
    assert report.status == "passed"
    dkim = report.records["dkim"]
    assert dkim["selector"] == "selector2"
    assert dkim["selectors_tried"] == list(DEFAULT_DKIM_SELECTORS)
    assert dkim["selectors_found"] == ["selector2"]
    assert "found by trying common selectors" in dkim["detail"]


async def test_dkim_nothing_to_guess(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimnone.test", selector=None)
    assert report.code == "dns.dkim_missing"
    assert "google, selector1, selector2" in report.detail
    assert report.records["dkim"]["selectors_tried"] == list(DEFAULT_DKIM_SELECTORS)


async def test_dkim_wildcard_txt_is_not_a_key(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimwild.test", selector=None)
    assert report.code == "dns.dkim_missing"


async def test_dkim_given_selector_missing(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "good.test", selector="wrong")
    assert report.code == "dns.dkim_missing"
    assert "wrong._domainkey.good.test" in report.detail and "'wrong'" in report.detail
    assert report.records["dkim"]["selectors_tried"][0] == "wrong"
    assert report.records["dkim"]["selectors_found"] == []


async def test_dkim_given_selector_missing_names_the_one_found(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimguess.test", selector="wrong")
    assert report.code == "dns.dkim_missing"
    assert "a key exists under selector 'selector2'" in report.detail


async def test_dkim_revoked_key(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimrevoked.test")
    assert report.code == "dns.dkim_invalid"
    assert "revoked" in report.detail


async def test_dkim_p_not_base64(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimbase64.test")
    assert report.code == "dns.dkim_invalid"
    assert "base64" in report.detail


async def test_dkim_p_not_a_key(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimgarbage.test")
    assert report.code == "dns.dkim_invalid"
    assert "RSA public key" in report.detail


async def test_dkim_split_txt_strings_are_joined(resolver: dns.asyncresolver.Resolver) -> None:
    answer = await resolver.resolve(f"{SELECTOR}._domainkey.dkimsplit.test", "TXT", search=False)
    assert len(answer[0].strings) > 5  # really published as several strings
    report = await check(resolver, "dkimsplit.test")
    assert report.status == "passed"
    assert report.records["dkim"]["key_bits"] == 2048


async def test_dkim_ed25519(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimed.test")
    assert report.status == "passed"
    assert (report.records["dkim"]["key_type"], report.records["dkim"]["key_bits"]) == ("ed25519", 256)


async def test_dkim_weak_rsa_key(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimweak.test")
    assert report.code == "dns.dkim_invalid"
    assert "512 bits" in report.detail


async def test_dkim_1024_bit_key_is_a_warning(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkim1024.test")
    assert report.status == "passed"
    assert any("1024 bits" in w for w in report.warnings)


async def test_dkim_through_cname(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dkimcname.test", selector="s1")
    assert report.status == "passed", report.detail
    assert report.records["dkim"]["cname"] == "s1.domainkey.u1.provider.test"


# --- DMARC ---------------------------------------------------------------------------------------------


async def test_no_dmarc(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "nodmarc.test")
    assert report.code == "dns.dmarc_missing"
    assert "_dmarc.nodmarc.test" in report.detail


async def test_dmarc_without_p(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dmarcnop.test")
    assert report.code == "dns.dmarc_invalid"
    assert "p=" in report.detail


async def test_dmarc_unknown_policy(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dmarcbadp.test")
    assert report.code == "dns.dmarc_invalid"
    assert "p=block" in report.detail


async def test_two_dmarc_records(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "twodmarc.test")
    assert report.code == "dns.dmarc_invalid"
    assert "2 DMARC records" in report.detail


async def test_dmarc_none_is_monitoring_only(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "dmarcnone.test")
    assert report.status == "passed"
    assert report.records["dmarc"]["policy"] == "none"
    assert any("monitoring only" in w for w in report.warnings)


async def test_dmarc_at_organizational_domain(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "sub.orgdmarc.test")
    assert report.status == "passed", report.detail
    dmarc = report.records["dmarc"]
    assert dmarc["organizational"] is True
    assert dmarc["name"] == "_dmarc.orgdmarc.test"
    assert (dmarc["policy"], dmarc["p"], dmarc["sp"]) == ("reject", "quarantine", "reject")
    assert dmarc["looked_up"] == ["_dmarc.sub.orgdmarc.test", "_dmarc.orgdmarc.test"]


# --- order of failures, timeouts -----------------------------------------------------------------------


async def test_first_failure_wins_and_others_are_named(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "multifail.test")
    assert report.code == "dns.spf_invalid"
    assert "also failing: dns.dmarc_missing" in report.detail
    assert [r["status"] for r in report.records.values()] == ["passed", "failed", "passed", "failed"]


async def test_silent_domain_times_out(resolver: dns.asyncresolver.Resolver) -> None:
    start = time.monotonic()
    report = await check(resolver, "silent.test", timeout=0.5)
    elapsed = time.monotonic() - start
    assert report.code == "dns.timeout"
    assert report.records["mx"]["code"] == report.records["spf"]["code"] == "dns.timeout"
    assert report.records["dmarc"]["status"] == "passed"  # other names of the zone still answer
    assert elapsed < 1.2


async def test_silent_dkim_only(resolver: dns.asyncresolver.Resolver) -> None:
    report = await check(resolver, "silentdkim.test", timeout=0.5)
    assert report.code == "dns.timeout"
    assert [r["code"] for r in report.records.values()] == [None, None, "dns.timeout", None]
    assert f"{SELECTOR}._domainkey.silentdkim.test" in report.detail


async def test_timeouts_of_parts_run_concurrently(resolver: dns.asyncresolver.Resolver) -> None:
    start = time.monotonic()
    report = await check(resolver, "silentparts.test", timeout=0.5)
    elapsed = time.monotonic() - start
    assert [r["code"] for r in report.records.values()] == [None, None, "dns.timeout", "dns.timeout"]
    assert elapsed < 0.9  # two silent parts, one deadline


# --- the test DNS server itself ------------------------------------------------------------------------


async def test_server_refuses_names_outside_its_zones(resolver: dns.asyncresolver.Resolver) -> None:
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve("example.com", "A", search=False)


async def test_server_nxdomain_nodata_and_empty_non_terminal(resolver: dns.asyncresolver.Resolver) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nothing.good.test", "A", search=False)
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("mx1.good.test", "TXT", search=False)
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("_domainkey.good.test", "TXT", search=False)


async def test_server_follows_cname(resolver: dns.asyncresolver.Resolver) -> None:
    answer = await resolver.resolve("alias.good.test", "A", search=False)
    assert [r.to_text() for r in answer] == ["127.0.0.10"]
    assert answer.canonical_name.to_text() == "mx1.good.test."


async def test_server_truncates_big_udp_answers_and_serves_tcp(
    dns_server: TestDnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    answer = await resolver.resolve("big.good.test", "TXT", search=False)
    assert len(answer) == 6
    transports = [q.transport for q in dns_server.queries if q.name == "big.good.test"]
    assert transports[-2:] == ["udp", "tcp"]


async def test_server_standalone_with_forced_truncation() -> None:
    zone = make_zone("solo.test", "mail A 127.0.0.1\nmail TXT " + txt("y" * 300))
    async with serve_dns((zone, "solo.test"), max_udp_size=100) as server:
        resolver = server.resolver(timeout=1.0)
        answer = await resolver.resolve("mail.solo.test", "A", search=False)
        assert answer[0].to_text() == "127.0.0.1"
        txt_answer = await resolver.resolve("mail.solo.test", "TXT", search=False)
        assert b"".join(txt_answer[0].strings) == b"y" * 300
        assert [q.transport for q in server.queries if q.rdtype == "TXT"] == ["udp", "tcp"]
