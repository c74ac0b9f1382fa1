"""DNS of a sending domain: MX, SPF, DKIM and DMARC, checked concurrently through our resolver.

``run_dns_checks`` runs four parts with ``asyncio.gather`` and reports each one's finding plus an
overall status whose code is the first failing part in the order mx, spf, dkim, dmarc. Failure codes:
``dns.mx_missing``, ``dns.spf_missing``, ``dns.spf_invalid``, ``dns.dkim_missing``, ``dns.dkim_invalid``,
``dns.dmarc_missing``, ``dns.dmarc_invalid`` and ``dns.timeout``.

Choices, so that they are made once:

* An explicit MX is required. RFC 5321 5.1 lets a domain without MX receive at its A/AAAA address
  (implicit MX), but a sending domain that relies on it loses replies and bounces at the first
  provider that does not deliver there; the detail says so. A null MX (``0 .``, RFC 7505) declares
  that the domain accepts no mail: ``dns.mx_missing`` as well. MX hosts that resolve to nothing are a
  failure when none resolves, a warning when some do not; hosts the resolver cannot answer for are
  not held against the domain.
* ``dns.timeout`` means "the answer is unknown", not "the record is wrong": no answer in time, or an
  answer that says nothing (SERVFAIL, REFUSED). All lookups of one run share one deadline
  (``timeout``), each is also bounded by the resolver's own lifetime, and each part is cancelled at the
  deadline as a last resort.
* SPF must exist, be unique, parse, and stay within 10 lookups and 2 void lookups over the whole
  include tree (see ``spf``). Whether it authorizes the SMTP host's addresses is a warning only: a
  submission host is often not the relay that sends outbound, so the SPF of the domain rightly lists
  other addresses.
* DKIM: with a selector, that key must be valid; without one, the usual selectors of our presets and
  of common software are tried concurrently (``DEFAULT_DKIM_SELECTORS``) and the report lists them.
  A given selector that has no key is ``dns.dkim_missing`` even when a guess finds a key elsewhere;
  the detail then names the selector found, which is almost always the fix.
* DMARC: ``_dmarc.<domain>``, then the organizational domain (see ``dmarc``); ``p=none`` passes with a
  "monitoring only" warning.

Every lookup of a run goes through one ``ResolverLookup``, which caches answers by (name, type) and
shares in-flight queries, so the SPF analysis, ``check_host`` for each sending address and the MX part
do not ask the same question twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdtypes.ANY.TXT
import dns.resolver

from nimbus_api.dns_checks.dkim import DkimKey, DkimKeyError, looks_like_dkim, parse_dkim_key
from nimbus_api.dns_checks.dmarc import (
    DmarcError,
    is_dmarc_candidate,
    organizational_domain,
    parse_dmarc,
)
from nimbus_api.dns_checks.spf import DnsAnswer, analyze_spf, check_host, normalize_ip

# Selectors tried, in this order, when the account names none. Presets first (providers/presets.py):
#   google                      Google Workspace and Gmail custom domains
#   selector1, selector2        Microsoft 365
#   s1, s2                      SendGrid (CNAMEs into sendgrid.net), and a common generic pair
#   k1, k2, k3                  Mailchimp / Mandrill
#   smtp, mx, krs, pic, mailo   Mailgun (the name depends on when the domain was added)
# Not guessable, so not listed: Amazon SES Easy DKIM publishes three CNAMEs named by random tokens
# (<token>._domainkey), and Postmark uses a date-stamped "<yyyymmddhhmmss>pm" selector; for those the
# user must give the selector. Then names common in self-hosted and other software.
DEFAULT_DKIM_SELECTORS: tuple[str, ...] = (
    "google",
    "selector1",
    "selector2",
    "s1",
    "s2",
    "k1",
    "k2",
    "k3",
    "smtp",
    "mx",
    "krs",
    "pic",
    "mailo",
    "mg",
    "default",
    "dkim",
    "mail",
    "email",
    "key1",
    "key2",
    "sig1",
    "mta",
    "mxvault",
    "zoho",
    "fm1",
    "fm2",
    "fm3",
    "protonmail",
)

PART_ORDER: tuple[str, ...] = ("mx", "spf", "dkim", "dmarc")
_BACKSTOP_GRACE = 0.25  # seconds after the deadline before a part is cancelled


@dataclass
class DnsFinding:
    """One part's outcome: ``code`` is None when it passed."""

    code: str | None
    detail: str
    warnings: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.code is None


@dataclass
class DnsReport:
    """The outcome of ``run_dns_checks``.

    ``records`` has one entry per part, ``mx``, ``spf``, ``dkim``, ``dmarc``, each with ``status``
    (passed/failed), ``code`` and ``detail`` of that part, then what it found: ``hosts`` (MX);
    ``record``, ``lookups``, ``void_lookups``, ``followed`` and ``sending_ips`` (SPF); ``selector``,
    ``name``, ``key_type``, ``key_bits``, ``selectors_tried`` (DKIM); ``record``, ``policy``, ``name``,
    ``organizational`` (DMARC). Everything in it is JSON-ready.
    """

    status: Literal["passed", "failed"]
    code: str | None  # first failing part in the order mx, spf, dkim, dmarc
    detail: str
    warnings: list[str]
    records: dict[str, Any]  # per part: status, code, detail and what was found (JSON-ready)
    duration_ms: int


class Unanswered(Exception):
    """A lookup a part cannot do without got no usable answer; the part reports ``dns.timeout``."""

    def __init__(self, name: str, rdtype: str, answer: DnsAnswer) -> None:
        what = "did not answer in time" if answer.status == "timeout" else "failed (server failure or refusal)"
        super().__init__(f"DNS {what} for {rdtype} {name}")
        self.detail = str(self)


# --- the lookup ------------------------------------------------------------------------------------


def _record_text(rdata: Any) -> str:
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    return str(rdata.to_text())


class ResolverLookup:
    """The ``spf.Lookup`` of a run on a dnspython resolver: cached, de-duplicated, under one deadline."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, deadline: float) -> None:
        self._resolver = resolver
        self._deadline = deadline
        self._tasks: dict[tuple[str, str], asyncio.Task[DnsAnswer]] = {}

    @property
    def deadline(self) -> float:
        return self._deadline

    async def __call__(self, name: str, rdtype: str) -> DnsAnswer:
        key = (name.rstrip(".").lower(), rdtype.upper())
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(self._query(*key))
            self._tasks[key] = task
        # Shielded: one caller giving up (its part was cancelled) must not cancel the others' query.
        return await asyncio.shield(task)

    async def _query(self, name: str, rdtype: str) -> DnsAnswer:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException:
            return DnsAnswer("nxdomain")  # not a valid name: nothing can exist there
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return DnsAnswer("timeout")
        lifetime = min(remaining, self._resolver.lifetime)
        try:
            answer = await self._resolver.resolve(qname, rdtype, search=False, lifetime=lifetime)
        except dns.resolver.NXDOMAIN:
            return DnsAnswer("nxdomain")
        except dns.resolver.NoAnswer:
            return DnsAnswer("nodata")
        except dns.exception.Timeout:
            return DnsAnswer("timeout")
        except (dns.exception.DNSException, OSError):  # NoNameservers (SERVFAIL/REFUSED), YXDOMAIN, network
            return DnsAnswer("error")
        return DnsAnswer(
            "ok",
            tuple(_record_text(r) for r in answer),
            canonical_name=answer.canonical_name.to_text(omit_final_dot=True).lower(),
        )

    async def aclose(self) -> None:
        pending = [t for t in self._tasks.values() if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _need(answer: DnsAnswer, name: str, rdtype: str) -> DnsAnswer:
    if answer.unanswered:
        raise Unanswered(name, rdtype, answer)
    return answer


# --- MX ----------------------------------------------------------------------------------------------


async def check_mx(domain: str, lookup: ResolverLookup) -> DnsFinding:
    answer = _need(await lookup(domain, "MX"), domain, "MX")
    if answer.status == "nxdomain":
        return DnsFinding("dns.mx_missing", f"{domain}: domain does not exist (NXDOMAIN)", data={"hosts": []})
    if answer.status == "nodata":
        a, aaaa = await asyncio.gather(lookup(domain, "A"), lookup(domain, "AAAA"))
        if a.status == "ok" or aaaa.status == "ok":
            detail = (
                f"{domain} has no MX record. It has an address record, which RFC 5321 would use as an "
                "implicit MX, but we require an explicit MX: a sending domain without one cannot reliably "
                "receive replies and bounces"
            )
        else:
            detail = f"{domain} has no MX record (and no address record): it cannot receive replies or bounces"
        return DnsFinding("dns.mx_missing", detail, data={"hosts": []})
    records = answer.mx()
    hosts = [{"preference": preference, "host": host or "."} for preference, host in records]
    if any(not host for _, host in records):
        detail = (
            f"{domain} publishes a null MX ('0 .', RFC 7505): it declares that it accepts no mail, so "
            "replies and bounces cannot reach it"
        )
        if len(records) > 1:
            detail += " (it also lists other MX hosts, which RFC 7505 forbids)"
        return DnsFinding("dns.mx_missing", detail, data={"hosts": hosts, "null_mx": True})

    names = [host for _, host in records]
    resolved = await asyncio.gather(*(_host_resolves(host, lookup) for host in names))
    dead = [host for host, ok in zip(names, resolved, strict=True) if ok is False]
    data: dict[str, Any] = {"hosts": hosts}
    if dead and len(dead) == len(names):
        return DnsFinding(
            "dns.mx_missing",
            f"none of the MX hosts of {domain} ({', '.join(dead)}) resolves to an address: it cannot receive mail",
            data=data,
        )
    warnings = [f"MX host {host} of {domain} does not resolve to an address" for host in dead]
    listed = ", ".join(f"{h['host']} ({h['preference']})" for h in hosts)
    return DnsFinding(None, f"MX: {listed}", warnings=warnings, data=data)


async def _host_resolves(host: str, lookup: ResolverLookup) -> bool | None:
    """True/False when known; None when DNS did not say (not held against the domain)."""
    a, aaaa = await asyncio.gather(lookup(host, "A"), lookup(host, "AAAA"))
    if a.status == "ok" or aaaa.status == "ok":
        return True
    if a.void and aaaa.void:
        return False
    return None


# --- SPF ---------------------------------------------------------------------------------------------


async def check_spf(domain: str, lookup: ResolverLookup, sending_ips: Sequence[str]) -> DnsFinding:
    analysis = await analyze_spf(domain, lookup)
    data: dict[str, Any] = {
        "record": analysis.record,
        "lookups": analysis.lookups,
        "void_lookups": analysis.void_lookups,
        "followed": analysis.followed,
    }
    if analysis.status == "unanswered":
        return DnsFinding("dns.timeout", analysis.detail, data=data)
    if analysis.status == "missing":
        return DnsFinding("dns.spf_missing", analysis.detail, data=data)
    if analysis.status == "invalid":
        return DnsFinding("dns.spf_invalid", analysis.detail, data=data)

    warnings = list(analysis.warnings)
    sending_ips = [ip for ip in sending_ips if _is_ip(ip)]
    if sending_ips:
        results = await asyncio.gather(*(check_host(ip, domain, lookup) for ip in sending_ips))
        data["sending_ips"] = {ip: r.result for ip, r in zip(sending_ips, results, strict=True)}
        for ip, result in zip(sending_ips, results, strict=True):
            if result.result != "pass":
                warnings.append(
                    f"SPF of {domain} does not authorize {ip}, an address of the SMTP host (result: "
                    f"{result.result}). Fine when that host relays through servers the SPF lists; "
                    "otherwise receivers will see mail from it fail SPF"
                )
    return DnsFinding(None, f"SPF record found ({analysis.lookups} of 10 DNS lookups)", warnings=warnings, data=data)


def _is_ip(value: str) -> bool:
    try:
        normalize_ip(value)
    except ValueError:
        return False
    return True


# --- DKIM --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Probe:
    selector: str
    name: str
    status: Literal["valid", "invalid", "missing", "unanswered"]
    key: DkimKey | None = None
    record: str | None = None
    reason: str = ""
    cname: str | None = None
    answer: DnsAnswer | None = None


async def _probe(selector: str, domain: str, lookup: ResolverLookup, *, guessing: bool) -> _Probe:
    name = f"{selector}._domainkey.{domain}"
    answer = await lookup(name, "TXT")
    if answer.unanswered:
        return _Probe(selector, name, "unanswered", answer=answer)
    records = list(answer.records)
    if guessing:  # a wildcard TXT under the domain must not pass for a key at every guessed selector
        records = [r for r in records if looks_like_dkim(r)]
    if answer.status != "ok" or not records:
        return _Probe(selector, name, "missing")
    cname = answer.canonical_name if answer.canonical_name and answer.canonical_name != name.lower() else None
    keys: list[DkimKey] = []
    for record in records:
        try:
            keys.append(parse_dkim_key(record))
        except DkimKeyError as exc:
            reason = str(exc) if len(records) == 1 else f"{exc} (one of {len(records)} TXT records there)"
            return _Probe(selector, name, "invalid", record=record, reason=reason, cname=cname)
    return _Probe(selector, name, "valid", key=keys[0], record=records[0], cname=cname)


def _dkim_data(probe: _Probe, tried: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {"selector": probe.selector, "name": probe.name, "selectors_tried": tried}
    if probe.key is not None:
        data |= {"key_type": probe.key.key_type, "key_bits": probe.key.bits, "testing": probe.key.testing}
    if probe.cname:
        data["cname"] = probe.cname
    return data


def _dkim_valid(probe: _Probe, tried: list[str], *, guessed: bool) -> DnsFinding:
    assert probe.key is not None
    how = " (found by trying common selectors: set it on the account)" if guessed else ""
    detail = f"DKIM key at {probe.name}: {probe.key.key_type} {probe.key.bits} bits{how}"
    warnings = [f"{w} ({probe.name})" for w in probe.key.warnings]
    return DnsFinding(None, detail, warnings=warnings, data=_dkim_data(probe, tried))


async def check_dkim(domain: str, lookup: ResolverLookup, selector: str | None) -> DnsFinding:
    if selector:
        # Accept what users paste: "s1", "s1._domainkey" or the full "s1._domainkey.example.com".
        selector = selector.strip().rstrip(".").lower().removesuffix(f".{domain}").removesuffix("._domainkey")
        probe = await _probe(selector, domain, lookup, guessing=False)
        if probe.status == "unanswered":
            assert probe.answer is not None
            raise Unanswered(probe.name, "TXT", probe.answer)
        if probe.status == "valid":
            return _dkim_valid(probe, [selector], guessed=False)
        if probe.status == "invalid":
            return DnsFinding(
                "dns.dkim_invalid",
                f"DKIM key at {probe.name} is invalid: {probe.reason}",
                data=_dkim_data(probe, [selector]) | {"record": probe.record},
            )
        others = [s for s in DEFAULT_DKIM_SELECTORS if s != selector]
        found = [p for p in await _probe_all(others, domain, lookup) if p.status == "valid"]
        detail = f"no DKIM key at {probe.name} (selector '{selector}')"
        if found:
            names = ", ".join(f"'{p.selector}'" for p in found)
            detail += f"; a key exists under selector {names}: is that the one this mailbox signs with?"
        data = {"selector": selector, "name": probe.name, "selectors_tried": [selector, *others]}
        data["selectors_found"] = [p.selector for p in found]
        return DnsFinding("dns.dkim_missing", detail, data=data)

    tried = list(DEFAULT_DKIM_SELECTORS)
    probes = await _probe_all(tried, domain, lookup)
    valid = [p for p in probes if p.status == "valid"]
    if valid:
        finding = _dkim_valid(valid[0], tried, guessed=True)
        finding.data["selectors_found"] = [p.selector for p in valid]
        return finding
    invalid = [p for p in probes if p.status == "invalid"]
    if invalid:
        probe = invalid[0]
        return DnsFinding(
            "dns.dkim_invalid",
            f"DKIM key at {probe.name} (selector guessed, none configured) is invalid: {probe.reason}",
            data=_dkim_data(probe, tried) | {"record": probe.record},
        )
    unanswered = [p for p in probes if p.status == "unanswered"]
    if unanswered:
        return DnsFinding(
            "dns.timeout",
            f"DNS did not answer for {len(unanswered)} of the {len(tried)} DKIM selectors tried "
            f"(e.g. {unanswered[0].name}), and none of the others has a key",
            data={"selector": None, "selectors_tried": tried},
        )
    return DnsFinding(
        "dns.dkim_missing",
        f"no DKIM key under any of the {len(tried)} usual selectors of {domain} ({', '.join(tried)}); "
        "set the DKIM selector of the account (Amazon SES and Postmark use selectors that cannot be guessed)",
        data={"selector": None, "selectors_tried": tried},
    )


async def _probe_all(selectors: Sequence[str], domain: str, lookup: ResolverLookup) -> list[_Probe]:
    return list(await asyncio.gather(*(_probe(s, domain, lookup, guessing=True) for s in selectors)))


# --- DMARC -------------------------------------------------------------------------------------------


async def check_dmarc(domain: str, lookup: ResolverLookup) -> DnsFinding:
    name = f"_dmarc.{domain}"
    answer = _need(await lookup(name, "TXT"), name, "TXT")
    candidates = [r for r in answer.records if is_dmarc_candidate(r)]
    organizational = organizational_domain(domain)
    inherited = False
    tried = [name]
    if not candidates and organizational != domain:
        org_name = f"_dmarc.{organizational}"
        tried.append(org_name)
        org_answer = _need(await lookup(org_name, "TXT"), org_name, "TXT")
        candidates = [r for r in org_answer.records if is_dmarc_candidate(r)]
        if candidates:
            name, inherited = org_name, True
    data: dict[str, Any] = {"name": name, "organizational": inherited, "looked_up": tried}
    if not candidates:
        where = " nor at ".join(tried)
        suffix = " (organizational domain)" if len(tried) > 1 else ""
        return DnsFinding("dns.dmarc_missing", f"no DMARC record at {where}{suffix}", data=data)
    if len(candidates) > 1:
        return DnsFinding(
            "dns.dmarc_invalid",
            f"{len(candidates)} DMARC records at {name}; receivers ignore DMARC when there is more than one "
            "(RFC 7489 6.6.3)",
            data=data | {"records": candidates},
        )
    try:
        record = parse_dmarc(candidates[0])
    except DmarcError as exc:
        return DnsFinding(
            "dns.dmarc_invalid", f"DMARC record at {name} is invalid: {exc}", data=data | {"record": candidates[0]}
        )
    # The policy that applies to this domain: at the organizational domain, sp= governs subdomains.
    policy = (record.subdomain_policy or record.policy) if inherited else record.policy
    data |= {
        "record": record.text,
        "policy": policy,
        "p": record.policy,
        "sp": record.subdomain_policy,
        "pct": record.pct,
        "adkim": record.adkim,
        "aspf": record.aspf,
        "rua": list(record.rua),
        "ruf": list(record.ruf),
    }
    warnings: list[str] = []
    if policy == "none":
        warnings.append(f"DMARC policy of {domain} is p=none: monitoring only, receivers act on nothing")
    if record.pct < 100 and policy != "none":
        warnings.append(f"DMARC applies its policy to only {record.pct}% of failing mail (pct={record.pct})")
    if not record.rua:
        warnings.append(f"DMARC record at {name} has no rua=: nobody receives aggregate reports")
    source = f"inherited from {name} (organizational domain)" if inherited else f"at {name}"
    return DnsFinding(None, f"DMARC policy {policy} {source}", warnings=warnings, data=data)


# --- the run -----------------------------------------------------------------------------------------


async def _guarded(part: Awaitable[DnsFinding], deadline: float, timeout: float) -> DnsFinding:
    try:
        async with asyncio.timeout_at(deadline + _BACKSTOP_GRACE):
            return await part
    except Unanswered as exc:
        return DnsFinding("dns.timeout", exc.detail)
    except TimeoutError:
        return DnsFinding("dns.timeout", f"DNS did not answer within {timeout:g} s")


def _normalize(domain: str) -> str | None:
    text = domain.strip().rstrip(".")
    if not text or "@" in text:
        return None
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException:
        return None
    return str(name.to_text(omit_final_dot=True)).lower()


async def run_dns_checks(
    domain: str,
    *,
    resolver: dns.asyncresolver.Resolver,
    dkim_selector: str | None,
    sending_ips: Sequence[str] = (),
    timeout: float = 10.0,
) -> DnsReport:
    """Check MX, SPF, DKIM and DMARC of ``domain`` concurrently; ``sending_ips`` are the SMTP host's."""
    start = time.monotonic()
    name = _normalize(domain)
    if name is None:  # nothing can be published under it: every part is missing
        detail = f"'{domain}' is not a valid domain name"
        parts = {part: DnsFinding(f"dns.{part}_missing", detail) for part in PART_ORDER}
        return _report(domain, parts, int((time.monotonic() - start) * 1000))
    deadline = asyncio.get_running_loop().time() + timeout
    lookup = ResolverLookup(resolver, deadline)
    try:
        findings = await asyncio.gather(
            _guarded(check_mx(name, lookup), deadline, timeout),
            _guarded(check_spf(name, lookup, list(sending_ips)), deadline, timeout),
            _guarded(check_dkim(name, lookup, dkim_selector), deadline, timeout),
            _guarded(check_dmarc(name, lookup), deadline, timeout),
        )
    finally:
        await lookup.aclose()
    parts = dict(zip(PART_ORDER, findings, strict=True))
    return _report(name, parts, int((time.monotonic() - start) * 1000))


def _part_record(finding: DnsFinding) -> dict[str, Any]:
    return {"status": "passed" if finding.passed else "failed", "code": finding.code, "detail": finding.detail} | (
        finding.data
    )


def _report(domain: str, parts: dict[str, DnsFinding], duration_ms: int) -> DnsReport:
    warnings = [w for finding in parts.values() for w in finding.warnings]
    records = {part: _part_record(finding) for part, finding in parts.items()}
    failed = [finding for finding in parts.values() if not finding.passed]
    if failed:
        first = failed[0]
        detail = first.detail
        if len(failed) > 1:
            detail += f" (also failing: {', '.join(str(f.code) for f in failed[1:])})"
        return DnsReport("failed", first.code, detail, warnings, records, duration_ms)
    dkim, dmarc = parts["dkim"].data, parts["dmarc"].data
    detail = (
        f"MX, SPF, DKIM (selector '{dkim.get('selector')}') and DMARC (policy {dmarc.get('policy')}) "
        f"are in place for {domain}"
    )
    return DnsReport("passed", None, detail, warnings, records, duration_ms)


__all__ = [
    "DEFAULT_DKIM_SELECTORS",
    "PART_ORDER",
    "DnsFinding",
    "DnsReport",
    "ResolverLookup",
    "Unanswered",
    "check_dkim",
    "check_dmarc",
    "check_mx",
    "check_spf",
    "run_dns_checks",
]
