"""DNS blocklists: which lists we ask, and how each one's answers read.

A DNSBL answers a query for ``<reversed IP>.<zone>`` (IP lists) or ``<domain>.<zone>`` (domain lists,
"DBL"/"URI" style) with NXDOMAIN when the subject is not listed, and with an address in 127.0.0.0/8
whose value says why when it is. The same channel also carries answers that are *not* listings: the
large lists refuse queries that come through public resolvers or exceed their free-use limits, and say
so with a reserved code. Reading such a code as "listed" would pause healthy domains, so every list has
its own table:

=====================  ========================================================================
Spamhaus (ZEN, DBL)    127.255.255.252 typing error in the query name, .254 query through a public
                       or open resolver, .255 too many queries: ``unknown``. DBL 127.0.1.255 (an IP
                       asked of a domain list): ``unknown``. ZEN 127.0.0.10/11 (PBL: the address is an
                       end-user range that should not deliver directly) is a listing but only
                       informational: mail relayed through a provider's server is not affected.
SURBL multi            bitmask in the last octet (8 phishing, 16 malware, 64 abuse, 128 cracked);
                       127.0.0.1 means the query was refused: ``unknown``.
URIBL multi            bitmask (2 black, 4 grey, 8 red); 127.0.0.1 is a refused query: ``unknown``.
                       Grey and red are informational, black blocks.
Barracuda, SpamCop     127.0.0.2 listed.
=====================  ========================================================================

Any answer outside 127.0.0.0/8 is not a listing (resolvers that rewrite NXDOMAIN to an advertising
server produce such answers) and reads ``unknown``; so does a 127.x code the table does not know
(the list said something we cannot interpret). No answer in time, SERVFAIL and REFUSED are ``unknown``;
NXDOMAIN and NOERROR without address are ``clean``.

Whether a listing *blocks* (pauses the domain) or is only shown is decided per list and, where a list
mixes severities (ZEN's PBL, URIBL's grey), per code.

Lists are configured with ``NIMBUS_BLOCKLISTS``: comma-separated ``zone:kind:effect`` entries, kind
``ip`` or ``domain``, effect ``blocking`` or ``info`` (``zen.spamhaus.org:ip:blocking``). A zone we
know keeps its table; another zone gets the generic reading (127.0.0.2..127.0.0.254 listed, 127.0.0.1
and 127.255.255.0/24 ``unknown``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from nimbus_api.config import DEFAULT_BLOCKLISTS

ListKind = Literal["ip", "domain"]
Verdict = Literal["clean", "listed", "unknown"]


@dataclass(frozen=True)
class Code:
    """What one answer code of a list means. ``blocking`` None: the list's own effect applies."""

    verdict: Verdict
    meaning: str
    blocking: bool | None = None


@dataclass(frozen=True)
class Blocklist:
    zone: str
    kind: ListKind
    blocking: bool
    name: str
    codes: Mapping[str, Code] = field(default_factory=dict)
    #: bit -> meaning, for lists that answer a bitmask in the last octet (SURBL, URIBL)
    bits: Mapping[int, Code] = field(default_factory=dict)

    def read(self, answers: Sequence[str]) -> Reading:
        """The reading of the A records a query returned (empty: not listed)."""
        if not answers:
            return Reading("clean", [], False)
        meanings: list[str] = []
        verdicts: list[Verdict] = []
        blocking = False
        for answer in answers:
            for code in self._codes_for(answer):
                verdicts.append(code.verdict)
                meanings.append(f"{answer}: {code.meaning}")
                if code.verdict == "listed" and (self.blocking if code.blocking is None else code.blocking):
                    blocking = True
        if "listed" in verdicts:
            return Reading("listed", meanings, blocking)
        return Reading("unknown", meanings, False)

    def _codes_for(self, answer: str) -> list[Code]:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            return [Code("unknown", "not an address")]
        if not isinstance(address, ipaddress.IPv4Address) or address not in _LOOPBACK_NET:
            return [Code("unknown", "an answer outside 127.0.0.0/8 is not a listing (a rewriting resolver?)")]
        if answer in self.codes:
            return [self.codes[answer]]
        if address in _REFUSED_NET:
            return [Code("unknown", "the list refused to answer (reserved 127.255.255.x code)")]
        if self.bits:
            last = int(answer.rsplit(".", 1)[1])
            found = [code for bit, code in self.bits.items() if last & bit]
            return found or [Code("unknown", "a code this list's table does not know")]
        if not self.codes:  # a zone we know nothing about: the generic reading
            if answer == "127.0.0.1":
                return [Code("unknown", "127.0.0.1 is not a listing on most lists (test or refused)")]
            return [Code("listed", "listed")]
        return [Code("unknown", "a code this list's table does not know")]


@dataclass(frozen=True)
class Reading:
    verdict: Verdict
    meanings: list[str]
    blocking: bool


_LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")
_REFUSED_NET = ipaddress.IPv4Network("127.255.255.0/24")

_SPAMHAUS_REFUSED = {
    "127.255.255.252": Code("unknown", "Spamhaus: typing error in the query name"),
    "127.255.255.254": Code("unknown", "Spamhaus: query through a public or open resolver refused"),
    "127.255.255.255": Code("unknown", "Spamhaus: too many queries (free-use limit), refused"),
}

SPAMHAUS_ZEN = Blocklist(
    zone="zen.spamhaus.org",
    kind="ip",
    blocking=True,
    name="Spamhaus ZEN",
    codes={
        "127.0.0.2": Code("listed", "SBL: Spamhaus Block List (spam source or operation)"),
        "127.0.0.3": Code("listed", "SBL CSS: snowshoe spam source"),
        "127.0.0.4": Code("listed", "XBL: exploited host (malware, botnet, open proxy)"),
        "127.0.0.5": Code("listed", "XBL: exploited host"),
        "127.0.0.6": Code("listed", "XBL: exploited host"),
        "127.0.0.7": Code("listed", "XBL: exploited host"),
        "127.0.0.9": Code("listed", "DROP: hijacked or criminal network"),
        "127.0.0.10": Code("listed", "PBL (ISP): end-user range, should not deliver directly", blocking=False),
        "127.0.0.11": Code("listed", "PBL (Spamhaus): end-user range, should not deliver directly", blocking=False),
        **_SPAMHAUS_REFUSED,
    },
)

SPAMHAUS_DBL = Blocklist(
    zone="dbl.spamhaus.org",
    kind="domain",
    blocking=True,
    name="Spamhaus DBL",
    codes={
        "127.0.1.2": Code("listed", "spam domain"),
        "127.0.1.4": Code("listed", "phishing domain"),
        "127.0.1.5": Code("listed", "malware domain"),
        "127.0.1.6": Code("listed", "botnet command and control domain"),
        "127.0.1.102": Code("listed", "abused legitimate domain (spam)"),
        "127.0.1.103": Code("listed", "abused legitimate domain (spammed redirector)"),
        "127.0.1.104": Code("listed", "abused legitimate domain (phishing)"),
        "127.0.1.105": Code("listed", "abused legitimate domain (malware)"),
        "127.0.1.106": Code("listed", "abused legitimate domain (botnet C&C)"),
        "127.0.1.255": Code("unknown", "Spamhaus DBL: IP queries are not allowed on the DBL"),
        **_SPAMHAUS_REFUSED,
    },
)

BARRACUDA = Blocklist(
    zone="b.barracudacentral.org",
    kind="ip",
    blocking=True,
    name="Barracuda BRBL",
    codes={"127.0.0.2": Code("listed", "listed in the Barracuda Reputation Block List")},
)

SPAMCOP = Blocklist(
    zone="bl.spamcop.net",
    kind="ip",
    blocking=False,  # listings are short-lived and triggered by a handful of reports
    name="SpamCop",
    codes={"127.0.0.2": Code("listed", "listed in the SpamCop Blocking List (recent spam reports)")},
)

SURBL_MULTI = Blocklist(
    zone="multi.surbl.org",
    kind="domain",
    blocking=True,
    name="SURBL multi",
    codes={"127.0.0.1": Code("unknown", "SURBL: query refused (blocked resolver or over the free-use limit)")},
    bits={
        8: Code("listed", "PH: phishing"),
        16: Code("listed", "MW: malware"),
        64: Code("listed", "ABUSE: spam"),
        128: Code("listed", "CR: cracked site"),
    },
)

URIBL_MULTI = Blocklist(
    zone="multi.uribl.com",
    kind="domain",
    blocking=True,
    name="URIBL multi",
    codes={"127.0.0.1": Code("unknown", "URIBL: query refused (blocked resolver or over the free-use limit)")},
    bits={
        2: Code("listed", "black: spam domain"),
        4: Code("listed", "grey: bulk mail domain", blocking=False),
        8: Code("listed", "red: recently seen in spam", blocking=False),
    },
)

KNOWN: dict[str, Blocklist] = {
    b.zone: b for b in (SPAMHAUS_ZEN, SPAMHAUS_DBL, BARRACUDA, SPAMCOP, SURBL_MULTI, URIBL_MULTI)
}
# The defaults of ``NIMBUS_BLOCKLISTS``: the major public lists, kept in config with the setting.
DEFAULT_ENTRIES: tuple[str, ...] = DEFAULT_BLOCKLISTS


def parse_entries(entries: Sequence[str]) -> list[Blocklist]:
    """``zone:kind:effect`` entries (see the module docstring) as lists; raise ``ValueError`` on a bad one."""
    found: list[Blocklist] = []
    for entry in entries:
        parts = [p.strip().lower() for p in entry.split(":")]
        if len(parts) != 3 or not parts[0] or parts[1] not in ("ip", "domain") or parts[2] not in ("blocking", "info"):
            raise ValueError(f"'{entry}' is not zone:ip|domain:blocking|info")
        zone = parts[0].rstrip(".")
        kind: ListKind = "ip" if parts[1] == "ip" else "domain"
        known = KNOWN.get(zone)
        if known is not None and known.kind == kind:
            found.append(Blocklist(zone, kind, parts[2] == "blocking", known.name, known.codes, known.bits))
        else:
            found.append(Blocklist(zone, kind, parts[2] == "blocking", zone))
    return found


def default_lists() -> list[Blocklist]:
    return parse_entries(DEFAULT_ENTRIES)


__all__ = [
    "DEFAULT_ENTRIES",
    "KNOWN",
    "Blocklist",
    "Code",
    "ListKind",
    "Reading",
    "Verdict",
    "default_lists",
    "parse_entries",
]
