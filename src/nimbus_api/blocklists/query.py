"""Asking DNS blocklists about sending IPs and a domain: concurrent, bounded, cached for the TTL.

Query names: an IPv4 address is asked as its octets reversed (``1.2.0.192.zen.spamhaus.org`` for
192.0.2.1); an IPv6 address as its 32 nibbles reversed, dot-separated (RFC 5782 2.4); a domain as
itself under the zone (``example.com.dbl.spamhaus.org``). IP lists are asked about IPs, domain lists
about the domain; an IPv4-mapped IPv6 address is asked as the IPv4 address it carries.

Every query of one ``check`` shares one deadline (``timeout``) and at most ``concurrency`` are in
flight at once; a query still waiting at the deadline is ``unknown``, so the whole check never takes
longer than the deadline, however many lists and addresses there are. Answers come from the resolver
the caller gives (``kit.egress.make_resolver``): operators point it at a resolver of their own (the
large lists refuse public resolvers) and tests at the loopback DNS server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from nimbus_api.blocklists.cache import TtlCache
from nimbus_api.blocklists.lists import Blocklist, Verdict

AnswerStatus = Literal["ok", "nxdomain", "nodata", "timeout", "error"]


@dataclass(frozen=True)
class Answer:
    status: AnswerStatus
    addresses: tuple[str, ...] = ()
    ttl: int = 0


@dataclass(frozen=True)
class ListResult:
    """One (list, subject) pair: what we asked, what it answered, how we read it."""

    zone: str
    list_name: str
    kind: str
    subject: str
    query: str
    verdict: Verdict
    answer: list[str]
    meanings: list[str]
    blocking: bool  # listed, and the listing is one that pauses the domain
    cached: bool


@dataclass(frozen=True)
class BlocklistReport:
    status: Verdict  # listed if any list lists a subject; else unknown if any answer is unknown; else clean
    results: list[ListResult]
    duration_ms: int

    @property
    def blocking(self) -> list[ListResult]:
        return [r for r in self.results if r.blocking]

    @property
    def listed(self) -> list[ListResult]:
        return [r for r in self.results if r.verdict == "listed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "duration_ms": self.duration_ms,
            "results": [asdict(r) for r in self.results],
        }


def query_name(subject: str, blocklist: Blocklist) -> str | None:
    """The name to ask ``blocklist`` about ``subject``; None when the subject is not of the list's kind."""
    try:
        address = ipaddress.ip_address(subject)
    except ValueError:
        address = None
    if blocklist.kind == "ip":
        if address is None:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if isinstance(address, ipaddress.IPv4Address):
            reversed_part = ".".join(reversed(str(address).split(".")))
        else:
            reversed_part = ".".join(reversed(address.exploded.replace(":", "")))
        return f"{reversed_part}.{blocklist.zone}"
    if address is not None:
        return None
    domain = subject.strip().rstrip(".").lower()
    return f"{domain}.{blocklist.zone}" if domain else None


def _negative_ttl(exc: dns.resolver.NXDOMAIN, default: int) -> int:
    """The SOA minimum of an NXDOMAIN (RFC 2308), or ``default`` when the answer carried no SOA."""
    for response in exc.responses().values():  # type: ignore[no-untyped-call]  # unannotated in dnspython
        if not isinstance(response, dns.message.Message):
            continue
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(min(rrset.ttl, next(iter(rrset)).minimum))
    return default


class BlocklistChecker:
    """Queries ``lists`` through ``resolver``; one per process, so its cache is shared by every check."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        lists: Sequence[Blocklist],
        *,
        cache: TtlCache[Answer] | None = None,
        concurrency: int = 16,
        timeout: float = 5.0,
        max_ttl: int = 3600,
        negative_ttl: int = 300,
    ) -> None:
        self.resolver = resolver
        self.lists = list(lists)
        self.cache: TtlCache[Answer] = cache if cache is not None else TtlCache()
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._in_flight: dict[str, asyncio.Future[Answer]] = {}

    async def check(self, ips: Sequence[str], domains: Sequence[str]) -> BlocklistReport:
        """Every IP against every IP list and every domain against every domain list."""
        start = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self.timeout
        gate = asyncio.Semaphore(self.concurrency)
        pairs: list[tuple[Blocklist, str, str]] = []
        seen: set[tuple[str, str]] = set()
        for blocklist in self.lists:
            for subject in [*ips, *domains]:
                name = query_name(subject, blocklist)
                if name is not None and (blocklist.zone, name) not in seen:
                    seen.add((blocklist.zone, name))
                    pairs.append((blocklist, subject, name))
        results = list(await asyncio.gather(*(self._one(b, s, n, gate, deadline) for b, s, n in pairs)))
        verdicts = {r.verdict for r in results}
        status: Verdict = (
            "listed" if "listed" in verdicts else "unknown" if ("unknown" in verdicts or not results) else "clean"
        )
        return BlocklistReport(status, results, int((time.monotonic() - start) * 1000))

    async def _one(
        self, blocklist: Blocklist, subject: str, name: str, gate: asyncio.Semaphore, deadline: float
    ) -> ListResult:
        cached = self.cache.get(name)
        answer = cached
        if answer is None:
            try:
                async with asyncio.timeout_at(deadline):
                    async with gate:
                        answer = await self._ask(name, deadline)
            except TimeoutError:
                answer = Answer("timeout")
        reading = blocklist.read(answer.addresses)
        verdict: Verdict = reading.verdict
        meanings = reading.meanings
        if answer.status in ("timeout", "error"):
            verdict = "unknown"
            meanings = ["no answer in time" if answer.status == "timeout" else "the server failed or refused to answer"]
        elif answer.status in ("nxdomain", "nodata"):
            meanings = ["not listed"]
        return ListResult(
            zone=blocklist.zone,
            list_name=blocklist.name,
            kind=blocklist.kind,
            subject=subject,
            query=name,
            verdict=verdict,
            answer=list(answer.addresses),
            meanings=meanings,
            blocking=verdict == "listed" and reading.blocking,
            cached=cached is not None,
        )

    async def _ask(self, name: str, deadline: float) -> Answer:
        # Two checks asking the same name at once share one query.
        future = self._in_flight.get(name)
        if future is None:
            future = asyncio.ensure_future(self._query(name, deadline))
            self._in_flight[name] = future
            future.add_done_callback(lambda _f: self._in_flight.pop(name, None))
        return await asyncio.shield(future)

    async def _query(self, name: str, deadline: float) -> Answer:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return Answer("timeout")
        try:
            qname = dns.name.from_text(name)
            result = await self.resolver.resolve(
                qname, "A", search=False, lifetime=min(remaining, self.resolver.lifetime)
            )
        except dns.resolver.NXDOMAIN as exc:
            answer = Answer("nxdomain", ttl=min(_negative_ttl(exc, self.negative_ttl), self.max_ttl))
        except dns.resolver.NoAnswer:
            answer = Answer("nodata", ttl=min(self.negative_ttl, self.max_ttl))
        except dns.exception.Timeout:
            return Answer("timeout")
        except (dns.exception.DNSException, OSError):  # SERVFAIL/REFUSED (NoNameservers), bad names, network
            return Answer("error")
        else:
            ttl = result.rrset.ttl if result.rrset is not None else self.negative_ttl
            answer = Answer("ok", tuple(sorted(str(r) for r in result)), min(int(ttl), self.max_ttl))
        self.cache.put(name, answer, answer.ttl)
        return answer


__all__ = ["Answer", "BlocklistChecker", "BlocklistReport", "ListResult", "query_name"]
