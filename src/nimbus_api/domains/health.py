"""A domain's health check, network part: DNS records, DMARC alignment and blocklists, on values only.

``run_health_check`` takes what the rows say (domain name, the DKIM selector and SMTP hosts of its
inboxes, the captured message) and returns one ``RecordResult`` per record plus the domain-wide
problems; ``domains.pause`` stores them and moves the pause state. Keeping the network work apart from
the rows means no row lock is held while DNS is asked.

Per-record status:

=============  ======================================================================================
mx spf dkim    the connect-time check of that part (``dns_checks``): passed -> ``pass``; failed ->
dmarc          ``fail`` with its code, except ``dns.timeout`` -> ``unknown``.
alignment      ``domains.alignment``: aligned -> ``pass``; misaligned -> ``fail`` (``dmarc.misaligned``)
               under ``p=quarantine|reject``, ``warn`` under ``p=none``; unknown -> ``unknown``.
blocklists     a listing on a blocking list -> ``fail`` (``blocklist.listed``); only on informational
               lists -> ``warn``; any unknown answer and nothing listed -> ``unknown``; else ``pass``.
=============  ======================================================================================

A domain-wide problem is a ``fail``; an ``unknown`` never creates one, and never clears one either
(``domains.pause`` carries the record's previous failure over): "DNS did not answer" is not news.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from nimbus_api.blocklists import BlocklistChecker, parse_entries
from nimbus_api.config import Settings
from nimbus_api.dns_checks import run_dns_checks
from nimbus_api.domains.alignment import AlignmentReport, check_alignment
from nimbus_api.kit.egress import EgressError, resolve_addresses
from nimbus_api.kit.net import NetContext

RecordStatus = Literal["pass", "warn", "fail", "unknown"]
DNS_RECORDS: tuple[str, ...] = ("mx", "spf", "dkim", "dmarc")
RECORDS: tuple[str, ...] = (*DNS_RECORDS, "alignment", "blocklists")


@dataclass
class RecordResult:
    status: RecordStatus
    code: str | None
    detail: dict[str, Any]


@dataclass
class HealthFindings:
    records: dict[str, RecordResult]
    sending_ips: list[str] = field(default_factory=list)
    dns_warnings: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Codes of the domain-wide problems found (records in the order of ``RECORDS``)."""
        return [r.code for name in RECORDS if (r := self.records.get(name)) and r.status == "fail" and r.code]

    @property
    def dns_status(self) -> str:
        """unknown | pass | warn | fail over the four DNS records (``warn``: all pass, with warnings)."""
        worst = _worst([self.records[n].status for n in DNS_RECORDS if n in self.records])
        return "warn" if worst == "pass" and self.dns_warnings else worst

    @property
    def blocklist_status(self) -> str:
        record = self.records.get("blocklists")
        if record is None:
            return "unknown"
        return {"pass": "clean", "fail": "listed", "warn": "listed"}.get(record.status, "unknown")


def _worst(statuses: Sequence[str]) -> str:
    for status in ("fail", "unknown", "warn", "pass"):
        if status in statuses:
            return status
    return "unknown"


@dataclass(frozen=True)
class DomainInboxes:
    """What the check needs from a domain's inboxes."""

    dkim_selectors: tuple[str | None, ...]
    smtp_hosts: tuple[str, ...]

    @property
    def selector(self) -> str | None:
        """The selector most inboxes give (None when none gives one: the usual ones are tried)."""
        given = Counter(s.strip().lower() for s in self.dkim_selectors if s and s.strip())
        return given.most_common(1)[0][0] if given else None


def address_checker(net: NetContext) -> Callable[[str], bool]:
    """Whether an address is one the egress policy treats as real (public, or allowlisted by the operator):
    the test of which Received hops count as sending IPs (see ``domains.alignment``)."""

    def address_ok(ip: str) -> bool:
        try:
            return net.policy.address_allowed(ipaddress.ip_address(ip))
        except ValueError:
            return False

    return address_ok


@dataclass
class HealthChecker:
    """Process-wide: the network context and the blocklist checker, whose cache every check shares."""

    net: NetContext
    blocklists: BlocklistChecker
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings, net: NetContext) -> HealthChecker:
        checker = BlocklistChecker(
            net.resolver,
            parse_entries(settings.blocklists),
            concurrency=settings.blocklist_concurrency,
            timeout=settings.blocklist_timeout_seconds,
            max_ttl=settings.blocklist_max_ttl_seconds,
        )
        return cls(net=net, blocklists=checker, timeout=settings.domain_check_timeout_seconds)

    def address_ok(self, ip: str) -> bool:
        return address_checker(self.net)(ip)

    async def smtp_addresses(self, hosts: Sequence[str]) -> list[str]:
        found: list[str] = []
        for addresses in await asyncio.gather(*(self._resolve(h) for h in dict.fromkeys(hosts))):
            found.extend(a for a in addresses if a not in found)
        return found

    async def _resolve(self, host: str) -> list[str]:
        # Only addresses the egress policy allows: a check must not reveal where an internal name points.
        with contextlib.suppress(EgressError):
            return [str(a) for a in await resolve_addresses(self.net.resolver, host) if self.address_ok(str(a))]
        return []


def dns_record_results(records: dict[str, Any]) -> dict[str, RecordResult]:
    results: dict[str, RecordResult] = {}
    for name in DNS_RECORDS:
        part = dict(records.get(name) or {})
        code = part.get("code")
        if part.get("status") == "passed":
            status: RecordStatus = "pass"
        elif code == "dns.timeout":
            status = "unknown"
        else:
            status = "fail"
        results[name] = RecordResult(status, code, part)
    return results


def alignment_result(report: AlignmentReport) -> RecordResult:
    detail = report.to_json()
    if report.status == "aligned":
        return RecordResult("pass", None, detail)
    if report.status == "misaligned":
        return RecordResult("fail" if report.blocks else "warn", "dmarc.misaligned", detail)
    return RecordResult("unknown", None, detail)


async def run_health_check(
    checker: HealthChecker, domain: str, inboxes: DomainInboxes, sample: bytes | None
) -> HealthFindings:
    """DNS, alignment and the SMTP hosts' addresses concurrently; then the blocklists (they need the IPs)."""
    dns_report, alignment, smtp_ips = await asyncio.gather(
        run_dns_checks(
            domain,
            resolver=checker.net.resolver,
            dkim_selector=inboxes.selector,
            sending_ips=[],
            timeout=checker.timeout,
        ),
        check_alignment(sample, resolver=checker.net.resolver, address_ok=checker.address_ok, timeout=checker.timeout),
        checker.smtp_addresses(inboxes.smtp_hosts),
    )
    records = dns_record_results(dns_report.records)
    records["alignment"] = alignment_result(alignment)
    ips = list(dict.fromkeys([*([alignment.spf.ip] if alignment.spf and alignment.spf.ip else []), *smtp_ips]))
    blocklists = await checker.blocklists.check(ips, [domain])
    detail = blocklists.to_json() | {"ips": ips, "domains": [domain]}
    if not checker.blocklists.lists:  # the operator turned blocklists off (NIMBUS_BLOCKLISTS empty)
        records["blocklists"] = RecordResult("pass", None, detail | {"detail": "no blocklists configured"})
    elif blocklists.blocking:
        records["blocklists"] = RecordResult("fail", "blocklist.listed", detail)
    elif blocklists.listed:
        records["blocklists"] = RecordResult("warn", "blocklist.listed_informational", detail)
    elif blocklists.status == "unknown":
        records["blocklists"] = RecordResult("unknown", None, detail)
    else:
        records["blocklists"] = RecordResult("pass", None, detail)
    return HealthFindings(records=records, sending_ips=ips, dns_warnings=list(dns_report.warnings))


__all__ = [
    "DNS_RECORDS",
    "RECORDS",
    "DomainInboxes",
    "HealthChecker",
    "HealthFindings",
    "RecordResult",
    "RecordStatus",
    "address_checker",
    "alignment_result",
    "run_health_check",
]
