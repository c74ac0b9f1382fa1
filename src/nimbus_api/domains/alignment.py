"""DMARC alignment of a message the mailbox really sent: does ``d=`` match From, does SPF pass for the
sending IP, and would DMARC therefore pass?

This answers the most common "the connection test passes but sends are not arriving" case: the
mailbox logs in, the message is accepted and read back, but the provider signs with its own domain
(``d=provider.example``) or relays from addresses the domain's SPF does not list, so receivers that
enforce DMARC (``p=quarantine``/``reject``) drop it. Only a real message shows it; DNS alone does not.

The message is the connect-time roundtrip's test message (captured over IMAP before it is deleted) or
the latest message of the Sent folder. What is read from it:

* From: the domain DMARC aligns against (RFC 7489 3.1).
* every DKIM-Signature: verified with ``dkimpy`` (``dkim.DKIM.verify``), whose ``dnsfunc`` serves keys
  fetched beforehand through *our* resolver (``dns_checks.checks.ResolverLookup``): dkimpy's own
  lookup is synchronous and goes to the system resolver on port 53, which operators may not allow and
  tests cannot use. Aligned when ``d=`` equals the From domain (``adkim=s``) or shares its
  organizational domain (``adkim=r``, the default).
* the sending IP: the client address of the topmost ``Received`` hop that is not an authenticated
  submission (``with ESMTPA``/``ESMTPSA``/``LMTPA``..., RFC 3848: that client is us) and whose address
  the egress policy treats as real (private and loopback hops of the provider's own plumbing are
  skipped, unless an operator allowlisted them). SPF is evaluated for it with the project's own RFC 7208
  ``check_host`` (``dns_checks.spf``), against the Return-Path domain (the envelope sender the last hop
  recorded), or the From domain when there is none; aligned per ``aspf`` like DKIM.
* Authentication-Results, as found, for the reader (never trusted: anyone upstream can add one).

Verdicts: ``aligned`` (DMARC passes: an aligned DKIM signature verifies, or SPF passes aligned),
``misaligned`` (neither), ``unknown`` (no message, or DNS did not answer for what decides it). A
misaligned domain whose DMARC policy is ``none`` is reported but does not pause it: receivers act on
nothing then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email import message_from_bytes
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Any, Literal

import dkim
import dns.asyncresolver

from nimbus_api.dns_checks.checks import ResolverLookup, Unanswered, check_dmarc
from nimbus_api.dns_checks.dkim import TagListError, parse_tag_list
from nimbus_api.dns_checks.dmarc import organizational_domain
from nimbus_api.dns_checks.spf import check_host

AlignmentStatus = Literal["aligned", "misaligned", "unknown"]
AUTHENTICATED_PROTOCOLS = frozenset({"esmtpa", "esmtpsa", "lmtpa", "lmtpsa", "utf8smtpa", "utf8smtpsa"})
CAPTURED_HEADERS = ("received", "dkim-signature", "from", "authentication-results", "return-path")

# dkimpy logs every failed verification at ERROR; here a failure is a finding reported to the user, not an
# error of ours, so its log goes nowhere.
_DKIM_LOG = logging.getLogger("nimbus_api.domains.alignment.dkimpy")
_DKIM_LOG.addHandler(logging.NullHandler())
_DKIM_LOG.propagate = False

_FROM_CLAUSE_RE = re.compile(r"\bfrom\b(?P<from>.*?)(?=\bby\b|$)", re.IGNORECASE | re.DOTALL)
_WITH_RE = re.compile(r"\bwith\s+([A-Za-z0-9]+)", re.IGNORECASE)
_IP_RE = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]|\(([0-9]{1,3}(?:\.[0-9]{1,3}){3})\)")


@dataclass
class SignatureResult:
    domain: str
    selector: str
    algorithm: str
    verified: bool
    aligned: bool
    detail: str


@dataclass
class SpfOutcome:
    ip: str | None
    domain: str | None
    result: str  # pass fail softfail neutral none permerror temperror, or "not_evaluated"
    aligned: bool
    detail: str


@dataclass
class AlignmentReport:
    status: AlignmentStatus
    detail: str
    from_domain: str | None
    dmarc_policy: str | None
    adkim: str
    aspf: str
    signatures: list[SignatureResult] = field(default_factory=list)
    spf: SpfOutcome | None = None
    received_ips: list[str] = field(default_factory=list)
    authentication_results: list[str] = field(default_factory=list)

    @property
    def blocks(self) -> bool:
        """Misaligned under a policy receivers enforce: a domain-wide problem."""
        return self.status == "misaligned" and self.dmarc_policy in ("quarantine", "reject")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 3.1: strict is an exact match, relaxed a shared organizational domain."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


def _header_domain(value: str | None) -> str | None:
    if not value:
        return None
    addresses = [addr for _, addr in getaddresses([value]) if "@" in addr]
    if not addresses:
        return None
    return addresses[0].rpartition("@")[2].strip().rstrip(".>").lower() or None


def received_hops(message: Message) -> list[tuple[str | None, str | None]]:
    """``(client IP, protocol)`` of each ``Received`` field, topmost (last added) first."""
    hops: list[tuple[str | None, str | None]] = []
    for value in message.get_all("Received") or []:
        text = " ".join(str(value).split())
        clause = _FROM_CLAUSE_RE.search(text)
        ip: str | None = None
        if clause is not None:
            for match in _IP_RE.finditer(clause.group("from")):
                candidate = match.group(1) or match.group(2)
                try:
                    ip = str(ipaddress.ip_address(candidate))
                except ValueError:
                    continue
                break
        protocol = _WITH_RE.search(text)
        hops.append((ip, protocol.group(1).lower() if protocol else None))
    return hops


def sending_ip(message: Message, address_ok: Callable[[str], bool]) -> tuple[str | None, list[str]]:
    """The sending IP (see the module docstring) and every client IP of the chain, top first."""
    hops = received_hops(message)
    ips = [ip for ip, _ in hops if ip is not None]
    for ip, protocol in hops:
        if ip is None or (protocol is not None and protocol in AUTHENTICATED_PROTOCOLS):
            continue
        if address_ok(ip):
            return ip, ips
    return None, ips


def _signature_tags(message: Message) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for value in message.get_all("DKIM-Signature") or []:
        try:
            found.append(parse_tag_list(" ".join(str(value).split())))
        except TagListError:
            found.append({})
    return found


async def _verify_signatures(
    raw: bytes, tags: list[dict[str, str]], from_domain: str, adkim: str, lookup: ResolverLookup
) -> list[SignatureResult]:
    names = {f"{t['s']}._domainkey.{t['d']}".lower().rstrip(".") for t in tags if t.get("s") and t.get("d")}
    answers = dict(zip(names, await asyncio.gather(*(lookup(n, "TXT") for n in names)), strict=True))

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        key = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        answer = answers.get(key)
        if answer is None or answer.unanswered:
            raise dkim.DnsTimeoutError(f"DNS did not answer for {key}")
        return answer.records[0].encode() if answer.records else None

    results: list[SignatureResult] = []
    verifier = dkim.DKIM(raw, logger=_DKIM_LOG, minkey=1024)
    for index, t in enumerate(tags):
        domain, selector = t.get("d", "").lower(), t.get("s", "").lower()
        is_aligned = bool(domain) and aligned(domain, from_domain, adkim)
        try:
            ok = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
            detail = "signature verifies" if ok else "signature does not verify (body or headers changed, or wrong key)"
        except dkim.DnsTimeoutError as exc:
            ok, detail = False, f"key lookup failed: {exc}"
        except dkim.DKIMException as exc:
            ok, detail = False, f"signature does not verify: {exc}"
        results.append(SignatureResult(domain, selector, t.get("a", ""), ok, is_aligned, detail))
    return results


async def check_alignment(
    raw: bytes | None,
    *,
    resolver: dns.asyncresolver.Resolver,
    address_ok: Callable[[str], bool],
    timeout: float = 10.0,
) -> AlignmentReport:
    """Read ``raw`` (a whole message as received) and decide DMARC alignment; see the module docstring."""
    if not raw:
        return AlignmentReport(
            "unknown", "no message to read: verify an account of the domain to capture one", None, None, "r", "r"
        )
    message = message_from_bytes(raw)
    from_domain = _header_domain(str(message.get("From", "")))
    auth_results = [" ".join(str(v).split())[:500] for v in message.get_all("Authentication-Results") or []]
    if from_domain is None:
        return AlignmentReport("unknown", "the message has no From address", None, None, "r", "r")
    deadline = asyncio.get_running_loop().time() + timeout
    lookup = ResolverLookup(resolver, deadline)
    try:
        dmarc = await check_dmarc(from_domain, lookup)
        adkim = str(dmarc.data.get("adkim") or "r")
        aspf = str(dmarc.data.get("aspf") or "r")
        policy = dmarc.data.get("policy")
        signatures = await _verify_signatures(raw, _signature_tags(message), from_domain, adkim, lookup)
        ip, ips = sending_ip(message, address_ok)
        _, return_path = parseaddr(str(message.get("Return-Path", "")))
        spf_domain = return_path.rpartition("@")[2].lower() if "@" in return_path else from_domain
        if ip is None:
            spf = SpfOutcome(None, spf_domain, "not_evaluated", False, "no sending IP in the Received chain")
        else:
            result = await check_host(ip, spf_domain, lookup, sender=return_path or None)
            spf = SpfOutcome(ip, spf_domain, result.result, aligned(spf_domain, from_domain, aspf), result.detail)
    except Unanswered as exc:  # the DMARC record could not be read: alignment modes and policy unknown
        return AlignmentReport("unknown", exc.detail, from_domain, None, "r", "r", authentication_results=auth_results)
    except dkim.DKIMException as exc:  # the message cannot be parsed as a signed message at all
        return AlignmentReport("unknown", f"the message could not be read: {exc}", from_domain, None, "r", "r")
    finally:
        await lookup.aclose()
    report = AlignmentReport(
        "unknown", "", from_domain, str(policy) if policy else None, adkim, aspf, signatures, spf, ips, auth_results
    )
    report.status, report.detail = _verdict(report)
    return report


def _verdict(report: AlignmentReport) -> tuple[AlignmentStatus, str]:
    dkim_pass = [s for s in report.signatures if s.verified and s.aligned]
    spf = report.spf
    spf_pass = spf is not None and spf.result == "pass" and spf.aligned
    if dkim_pass:
        return "aligned", f"DKIM signature d={dkim_pass[0].domain} verifies and aligns with From {report.from_domain}"
    if spf_pass:
        assert spf is not None
        return "aligned", f"SPF passes for {spf.ip} ({spf.domain}), aligned with From {report.from_domain}"
    if (spf is not None and spf.result == "temperror") or any("lookup failed" in s.detail for s in report.signatures):
        return "unknown", "DNS did not answer for a key or SPF record that decides alignment"
    reasons: list[str] = []
    if not report.signatures:
        reasons.append("the message carries no DKIM signature")
    for s in report.signatures:
        if not s.aligned:
            reasons.append(f"DKIM d={s.domain} does not align with From {report.from_domain} (adkim={report.adkim})")
        elif not s.verified:
            reasons.append(f"DKIM d={s.domain} aligns but {s.detail}")
    if spf is None or spf.ip is None:
        reasons.append("no sending IP found for SPF")
    elif spf.result != "pass":
        reasons.append(f"SPF of {spf.domain} gives {spf.result} for {spf.ip}")
    else:
        reasons.append(f"SPF passes for {spf.domain}, which does not align with From {report.from_domain}")
    return "misaligned", "DMARC fails: " + "; ".join(reasons)


def captured_headers(raw: bytes) -> dict[str, list[str]]:
    """The headers alignment reads, for display (``CAPTURED_HEADERS``), each value on one line."""
    message = message_from_bytes(raw)
    return {name: [" ".join(str(v).split())[:2000] for v in message.get_all(name) or []] for name in CAPTURED_HEADERS}


__all__ = [
    "AlignmentReport",
    "SignatureResult",
    "SpfOutcome",
    "aligned",
    "captured_headers",
    "check_alignment",
    "received_hops",
    "sending_ip",
]
