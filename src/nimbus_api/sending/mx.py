"""Recipient-domain MX check at dispatch (campaigns with ``verify_email_mx``), cached per process.

A domain accepts mail when it has an MX that is not the null MX (RFC 7505 ``0 .``), or, with no MX at
all, an A or AAAA record (RFC 5321 implicit MX). NXDOMAIN, a null MX, or neither record: it does not.
A DNS failure (timeout, SERVFAIL) is *not* a verdict: the contact is sent to as usual rather than
bounced on our resolver's bad minute.
"""

from __future__ import annotations

import time

import dns.asyncresolver
import dns.exception
import dns.resolver

POSITIVE_TTL = 3600.0
NEGATIVE_TTL = 900.0


class MxChecker:
    def __init__(self, resolver: dns.asyncresolver.Resolver, *, max_entries: int = 50_000) -> None:
        self.resolver = resolver
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, bool]] = {}

    async def accepts_mail(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        cached = self._cache.get(domain)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        verdict = await self._lookup(domain)
        if verdict is None:
            return True
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[domain] = (now + (POSITIVE_TTL if verdict else NEGATIVE_TTL), verdict)
        return verdict

    async def _lookup(self, domain: str) -> bool | None:
        try:
            answer = await self.resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            return False
        except dns.resolver.NoAnswer:
            return await self._has_address(domain)
        except (dns.exception.Timeout, dns.resolver.NoNameservers):
            return None
        hosts = [r.exchange.to_text() for r in answer]
        return any(h not in (".", "") for h in hosts)

    async def _has_address(self, domain: str) -> bool | None:
        for rdtype in ("A", "AAAA"):
            try:
                await self.resolver.resolve(domain, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except (dns.exception.Timeout, dns.resolver.NoNameservers):
                return None
            return True
        return False
