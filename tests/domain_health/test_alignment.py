"""DMARC alignment of a received message: DKIM ``d=`` against From (relaxed and strict), signatures
verified with dkimpy through our resolver, SPF evaluated for the sending IP of the Received chain.

Keys are generated per run and published in the loopback DNS server's zones; messages are signed
with dkimpy as a sending server would sign them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import dns.asyncresolver
import pytest

from nimbus_api.domains.alignment import aligned, captured_headers, check_alignment, sending_ip
from tests.domain_health.signing import TestKey, message, sign
from tests.servers.dns_server import TestDnsServer, make_zone, txt

KEY = TestKey()
OTHER_KEY = TestKey()  # published nowhere: signatures made with it fail

RELAY = "192.0.2.10"  # in align.test's SPF
STRANGER = "203.0.113.5"  # in nobody's SPF
CLIENT = "198.51.100.7"  # our own egress address, seen by the submission server


def _hops(relay: str) -> list[str]:
    """A message as the recipient's MX sees it: the provider's relay on top, the submission below."""
    return [
        f"from relay.provider.test (relay.provider.test [{relay}]) by mx.recipient.test with ESMTPS id 1; "
        "Fri, 04 Dec 2026 20:00:01 +0000",
        f"from client.example ([{CLIENT}]) by submit.provider.test with ESMTPSA id 2; Fri, 04 Dec 2026 20:00:00 +0000",
        "from localhost ([127.0.0.1]) by internal.provider.test with LMTP; Fri, 04 Dec 2026 19:59:59 +0000",
    ]


def _domain(origin: str, *, dmarc: str = "v=DMARC1; p=reject", spf: str = f"v=spf1 ip4:{RELAY} -all") -> str:
    return make_zone(
        origin,
        f"@ IN TXT {txt(spf)}\n_dmarc IN TXT {txt(dmarc)}\n{KEY.record('sel')}\n"
        f"mail IN TXT {txt('v=spf1 -all')}\n{KEY.record('sel', under='mail')}\n",
    )


@pytest.fixture(scope="module")
async def resolver() -> AsyncIterator[dns.asyncresolver.Resolver]:
    server = TestDnsServer()
    server.add_zone(_domain("align.test"), "align.test")
    server.add_zone(_domain("strict.test", dmarc="v=DMARC1; p=quarantine; adkim=s; aspf=s"), "strict.test")
    server.add_zone(_domain("monitor.test", dmarc="v=DMARC1; p=none"), "monitor.test")
    server.add_zone(
        make_zone("provider.test", f"{KEY.record('p1')}\n@ IN TXT {txt('v=spf1 ip4:' + STRANGER + ' -all')}"),
        "provider.test",
    )
    server.add_zone(make_zone("slow.test", f"@ IN TXT {txt('v=spf1 -all')}"), "slow.test")
    server.silent_names.add("_dmarc.slow.test")
    await server.start()
    yield server.resolver(timeout=0.5)
    await server.stop()


def not_loopback(ip: str) -> bool:
    return not ipaddress.ip_address(ip).is_loopback


async def run(raw: bytes | None, resolver: dns.asyncresolver.Resolver):  # type: ignore[no-untyped-def]
    return await check_alignment(raw, resolver=resolver, address_ok=not_loopback, timeout=3)


async def test_aligned_signature_that_verifies(resolver: dns.asyncresolver.Resolver) -> None:
    raw = sign(message("ada@align.test", received=_hops(STRANGER)), KEY, domain="align.test", selector="sel")
    report = await run(raw, resolver)
    assert report.status == "aligned", report.detail
    (sig,) = report.signatures
    assert (sig.domain, sig.selector, sig.verified, sig.aligned) == ("align.test", "sel", True, True)
    assert report.dmarc_policy == "reject" and not report.blocks


async def test_provider_domain_signature_is_misaligned(resolver: dns.asyncresolver.Resolver) -> None:
    """The classic: the provider signs with its own d=, and its relay is not in the domain's SPF."""
    raw = sign(message("ada@align.test", received=_hops(STRANGER)), KEY, domain="provider.test", selector="p1")
    report = await run(raw, resolver)
    assert report.status == "misaligned"
    (sig,) = report.signatures
    assert sig.verified and not sig.aligned  # a good signature, just not for the From domain
    assert report.spf is not None and report.spf.ip == STRANGER and report.spf.result == "fail"
    assert "d=provider.test does not align with From align.test" in report.detail
    assert report.blocks  # p=reject: receivers drop such mail


async def test_relaxed_and_strict_alignment_of_a_subdomain_signature(resolver: dns.asyncresolver.Resolver) -> None:
    relaxed = await run(
        sign(message("ada@align.test", received=_hops(STRANGER)), KEY, domain="mail.align.test", selector="sel"),
        resolver,
    )
    assert relaxed.status == "aligned" and relaxed.adkim == "r"
    strict = await run(
        sign(message("ada@strict.test", received=_hops(STRANGER)), KEY, domain="mail.align.test", selector="sel"),
        resolver,
    )
    assert strict.status == "misaligned" and strict.adkim == "s"
    assert aligned("mail.strict.test", "strict.test", "s") is False
    assert aligned("mail.strict.test", "strict.test", "r") is True


async def test_a_signature_that_does_not_verify(resolver: dns.asyncresolver.Resolver) -> None:
    signed = sign(message("ada@align.test", received=_hops(STRANGER)), KEY, domain="align.test", selector="sel")
    tampered = signed.replace(b"Hello there.", b"Hello world.")
    report = await run(tampered, resolver)
    (sig,) = report.signatures
    assert sig.aligned and not sig.verified
    assert report.status == "misaligned" and "aligns but" in report.detail
    wrong_key = sign(
        message("ada@align.test", received=_hops(STRANGER)), OTHER_KEY, domain="align.test", selector="sel"
    )
    assert (await run(wrong_key, resolver)).signatures[0].verified is False


async def test_spf_passes_for_the_relay_ip_and_fails_for_another(resolver: dns.asyncresolver.Resolver) -> None:
    unsigned_ok = await run(message("ada@align.test", received=_hops(RELAY)), resolver)
    assert unsigned_ok.spf is not None and unsigned_ok.spf.ip == RELAY
    assert unsigned_ok.spf.result == "pass" and unsigned_ok.spf.aligned
    assert unsigned_ok.status == "aligned"  # DMARC passes on SPF alone
    unsigned_bad = await run(message("ada@align.test", received=_hops(STRANGER)), resolver)
    assert unsigned_bad.spf is not None and unsigned_bad.spf.result == "fail"
    assert unsigned_bad.status == "misaligned" and "no DKIM signature" in unsigned_bad.detail


async def test_spf_is_checked_against_the_return_path_domain(resolver: dns.asyncresolver.Resolver) -> None:
    raw = message("ada@align.test", received=_hops(STRANGER), return_path="bounces@provider.test")
    report = await run(raw, resolver)
    assert report.spf is not None and report.spf.domain == "provider.test" and report.spf.result == "pass"
    assert not report.spf.aligned and report.status == "misaligned"
    assert "does not align" in report.detail


async def test_p_none_reports_but_does_not_block(resolver: dns.asyncresolver.Resolver) -> None:
    report = await run(message("ada@monitor.test", received=_hops(STRANGER)), resolver)
    assert report.status == "misaligned" and report.dmarc_policy == "none" and not report.blocks


async def test_no_message_or_no_dns_answer_is_unknown(resolver: dns.asyncresolver.Resolver) -> None:
    assert (await run(None, resolver)).status == "unknown"
    slow = await run(message("ada@slow.test", received=_hops(STRANGER)), resolver)
    assert slow.status == "unknown" and not slow.blocks


def test_sending_ip_skips_authenticated_submission_and_unreal_hops() -> None:
    from email import message_from_bytes

    msg = message_from_bytes(message("a@align.test", received=_hops(RELAY)))
    ip, chain = sending_ip(msg, not_loopback)
    assert ip == RELAY and chain == [RELAY, CLIENT, "127.0.0.1"]
    # Only the submission hop and a loopback hop: no sending IP (the client address is ours, not a relay).
    only_submission = message_from_bytes(message("a@align.test", received=_hops(RELAY)[1:]))
    assert sending_ip(only_submission, not_loopback)[0] is None
    ipv6 = message_from_bytes(message("a@x.test", received=["from r.test ([IPv6:2001:db8::25]) by mx.test with ESMTP"]))
    assert sending_ip(ipv6, not_loopback)[0] == "2001:db8::25"


def test_captured_headers_are_the_ones_alignment_reads() -> None:
    raw = sign(message("ada@align.test", received=_hops(RELAY)), KEY, domain="align.test", selector="sel")
    headers = captured_headers(raw)
    assert set(headers) == {"received", "dkim-signature", "from", "authentication-results", "return-path"}
    assert len(headers["received"]) == 3 and headers["dkim-signature"][0].startswith("v=1;")
