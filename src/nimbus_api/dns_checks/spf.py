"""SPF (RFC 7208): a strict parser, a static analyser of the whole include tree, and ``check_host``.

Why our own and not pyspf / checkdmarc: both are synchronous and query through their own resolver on
port 53, while every lookup of ours must go through the configured async resolver (operators point it
at their own servers; tests serve DNS on a high loopback port). So DNS is injected: everything here
takes a ``Lookup``, an ``async (name, rdtype) -> DnsAnswer`` callable. ``checks.ResolverLookup``
implements it on a dnspython resolver; the unit tests implement it on a dict.

Two questions are answered, and they are different:

* ``analyze_spf`` — is the published policy usable at all? It walks the *whole* tree (every
  ``include`` and an applicable ``redirect``), the way receivers' worst case sees it: one ``v=spf1``
  record per domain, valid syntax everywhere, no include loop, at most 10 DNS-querying terms in total
  (``include a mx ptr exists`` and ``redirect``, RFC 7208 4.6.4) and at most 2 void lookups. Counting the
  whole tree rather than one evaluation path is deliberate: a receiver evaluating a sender that matches
  late pays for every term before it, so a tree over 10 fails for part of the mail.
* ``check_host`` — does the policy authorize this IP? It is the RFC 7208 section 4 evaluation, left to
  right, first match wins, with the same limits counted on the path actually evaluated, and results
  ``pass fail softfail neutral none permerror temperror``.

Deliberate simplifications: the ``exp=`` explanation is validated but never fetched (it only words a
fail result); the ``p`` macro expands to ``unknown`` (RFC 7208 7.3 allows it and discourages ``p``);
names holding macros cannot be followed statically, so ``analyze_spf`` counts them but does not
descend into them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# --- injected DNS ---------------------------------------------------------------------------------

LookupStatus = Literal["ok", "nxdomain", "nodata", "timeout", "error"]


@dataclass(frozen=True)
class DnsAnswer:
    """One lookup's outcome, transport-neutral.

    ``records`` holds presentation text: TXT strings already joined (RFC 7208 3.3, RFC 6376 3.6.2.2),
    A/AAAA addresses, MX as ``"10 mx.example.com."`` (``"0 ."`` is a null MX), PTR/CNAME targets.
    ``timeout`` is no answer in time; ``error`` is an answer that says nothing (SERVFAIL, REFUSED).
    """

    status: LookupStatus
    records: tuple[str, ...] = ()
    canonical_name: str | None = None

    @property
    def void(self) -> bool:
        """NXDOMAIN or NOERROR without records: a "void lookup" in RFC 7208 terms."""
        return self.status in ("nxdomain", "nodata")

    @property
    def unanswered(self) -> bool:
        return self.status in ("timeout", "error")

    def mx(self) -> list[tuple[int, str]]:
        """MX records as ``(preference, host)``, host without the final dot; ``""`` is a null MX."""
        found: list[tuple[int, str]] = []
        for record in self.records:
            preference, _, host = record.partition(" ")
            host = host.strip().rstrip(".").lower()
            found.append((int(preference), host))
        return sorted(found)


Lookup = Callable[[str, str], Awaitable[DnsAnswer]]

# --- records and terms ----------------------------------------------------------------------------

MAX_DNS_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_HOSTS = 10
MAX_PTR_NAMES = 10

MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
SpfResultCode = Literal["pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"]
QUALIFIER_RESULTS: dict[str, SpfResultCode] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


class SpfSyntaxError(ValueError):
    """The record does not follow the RFC 7208 grammar; the message names the offending term."""


@dataclass(frozen=True)
class Mechanism:
    qualifier: str  # one of + - ~ ?
    name: str  # lower case, one of MECHANISMS
    text: str  # the term as written
    domain_spec: str | None = None  # include/exists/a/mx/ptr target, macros unexpanded
    network: IPNetwork | None = None  # ip4/ip6
    cidr4: int = 32  # a/mx
    cidr6: int = 128

    @property
    def queries_dns(self) -> bool:
        return self.name in DNS_MECHANISMS


@dataclass(frozen=True)
class SpfRecord:
    text: str
    mechanisms: tuple[Mechanism, ...]
    redirect: str | None = None
    exp: str | None = None
    unknown_modifiers: tuple[tuple[str, str], ...] = ()

    @property
    def has_all(self) -> bool:
        return any(m.name == "all" for m in self.mechanisms)

    @property
    def redirect_applies(self) -> bool:
        """RFC 7208 6.1: ``redirect`` is ignored when the record has an ``all`` mechanism (it always matches)."""
        return self.redirect is not None and not self.has_all

    @property
    def all_qualifier(self) -> str | None:
        return next((m.qualifier for m in self.mechanisms if m.name == "all"), None)


def is_spf_record(text: str) -> bool:
    """RFC 7208 4.5: a TXT record is an SPF record when it starts with ``v=spf1`` then a space or its end."""
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


_MODIFIER_RE = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.DOTALL)
_MECHANISM_RE = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9]*)(.*)", re.DOTALL)
_DUAL_CIDR_RE = re.compile(r"(?::(?P<spec>.*?))?(?:/(?P<c4>[0-9]+))?(?://(?P<c6>[0-9]+))?", re.DOTALL)
_MACRO_RE = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")
_TOPLABEL_RE = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9]")
_RECORD_MACRO_LETTERS = frozenset("slodiphv")  # c, r, t only in explanation strings (RFC 7208 7.2)
_MACRO_DELIMITERS = ".-+,/_="


def parse_spf(text: str) -> SpfRecord:
    """Parse one SPF record; raise ``SpfSyntaxError`` on anything RFC 7208 section 12 does not allow."""
    if not is_spf_record(text):
        raise SpfSyntaxError("the record does not start with 'v=spf1'")
    if not text.isascii():
        raise SpfSyntaxError("the record contains non-ASCII characters")
    mechanisms: list[Mechanism] = []
    redirect: str | None = None
    exp: str | None = None
    unknown: list[tuple[str, str]] = []
    for term in text[6:].split(" "):
        if not term:
            continue  # terms are separated by one or more spaces
        modifier = _MODIFIER_RE.fullmatch(term)
        if modifier is None:
            mechanisms.append(_parse_mechanism(term))
            continue
        name, value = modifier[1].lower(), modifier[2]
        if name in ("redirect", "exp"):
            if (redirect if name == "redirect" else exp) is not None:
                raise SpfSyntaxError(f"'{name}=' appears more than once")
            _check_domain_spec(value, term)
            if name == "redirect":
                redirect = value
            else:
                exp = value
        else:
            _tokenize(value, term)  # unknown modifiers are allowed, but their value must be a macro-string
            unknown.append((name, value))
    return SpfRecord(
        text=text, mechanisms=tuple(mechanisms), redirect=redirect, exp=exp, unknown_modifiers=tuple(unknown)
    )


def _parse_mechanism(term: str) -> Mechanism:
    match = _MECHANISM_RE.fullmatch(term)
    if match is None:
        raise SpfSyntaxError(f"'{term}' is not a mechanism or modifier")
    qualifier = match[1] or "+"
    name = match[2].lower()
    rest = match[3]
    if name not in MECHANISMS:
        raise SpfSyntaxError(f"'{term}': unknown mechanism '{match[2]}'")
    if rest and rest[0] not in ":/":
        raise SpfSyntaxError(f"'{term}' is not a valid term")
    if name == "all":
        if rest:
            raise SpfSyntaxError(f"'{term}': 'all' takes no argument")
        return Mechanism(qualifier, name, term)
    if name in ("include", "exists"):
        if not rest.startswith(":") or len(rest) == 1:
            raise SpfSyntaxError(f"'{term}': '{name}' needs ':<domain>'")
        _check_domain_spec(rest[1:], term)
        return Mechanism(qualifier, name, term, domain_spec=rest[1:])
    if name == "ptr":
        if not rest:
            return Mechanism(qualifier, name, term)
        if not rest.startswith(":") or len(rest) == 1:
            raise SpfSyntaxError(f"'{term}': 'ptr' takes only ':<domain>'")
        _check_domain_spec(rest[1:], term)
        return Mechanism(qualifier, name, term, domain_spec=rest[1:])
    if name in ("a", "mx"):
        dual = _DUAL_CIDR_RE.fullmatch(rest)
        if dual is None:
            raise SpfSyntaxError(f"'{term}' is not a valid '{name}' mechanism")
        spec = dual["spec"]
        if spec is not None:
            if not spec:
                raise SpfSyntaxError(f"'{term}': empty domain after ':'")
            _check_domain_spec(spec, term)
        cidr4 = _cidr(dual["c4"], 32, term) if dual["c4"] is not None else 32
        cidr6 = _cidr(dual["c6"], 128, term) if dual["c6"] is not None else 128
        return Mechanism(qualifier, name, term, domain_spec=spec, cidr4=cidr4, cidr6=cidr6)
    # ip4 / ip6
    if not rest.startswith(":"):
        raise SpfSyntaxError(f"'{term}': '{name}' needs ':<address>'")
    address, slash, length = rest[1:].partition("/")
    try:
        if name == "ip4":
            ip: IPAddress = ipaddress.IPv4Address(address)
        else:
            if "%" in address:  # Python accepts scoped addresses; SPF does not
                raise ValueError(address)
            ip = ipaddress.IPv6Address(address)
    except ValueError:
        raise SpfSyntaxError(f"'{term}': '{address}' is not an {'IPv4' if name == 'ip4' else 'IPv6'} address") from None
    maximum = 32 if name == "ip4" else 128
    prefix = _cidr(length, maximum, term) if slash else maximum
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return Mechanism(qualifier, name, term, network=network)


def _cidr(digits: str, maximum: int, term: str) -> int:
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0") or int(digits) > maximum:
        raise SpfSyntaxError(f"'{term}': CIDR length '/{digits}' is not between 0 and {maximum}")
    return int(digits)


# --- macros (RFC 7208 section 7) ------------------------------------------------------------------


@dataclass(frozen=True)
class _Macro:
    letter: str  # as written: upper case means URL-escape the result
    digits: int | None
    reverse: bool
    delimiters: str


_Token = tuple[Literal["literal", "escape"], str] | tuple[Literal["macro"], _Macro]


def _tokenize(value: str, term: str, *, explanation: bool = False) -> list[_Token]:
    """Split a macro-string into literal runs, ``%%``/``%_``/``%-`` escapes and ``%{...}`` macros."""
    tokens: list[_Token] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            tokens.append(("literal", "".join(literal)))
            literal.clear()

    i = 0
    while i < len(value):
        char = value[i]
        if char != "%":
            if not 0x21 <= ord(char) <= 0x7E:
                raise SpfSyntaxError(f"'{term}': invalid character {char!r}")
            literal.append(char)
            i += 1
            continue
        following = value[i + 1 : i + 2]
        if following in ("%", "_", "-"):
            flush()
            tokens.append(("escape", {"%": "%", "_": " ", "-": "%20"}[following]))
            i += 2
            continue
        match = _MACRO_RE.match(value, i) if following == "{" else None
        if match is None:
            raise SpfSyntaxError(f"'{term}': '%' must start a macro like %{{d}} or be written %%")
        letter = match[1]
        allowed = _RECORD_MACRO_LETTERS | (frozenset("crt") if explanation else frozenset())
        if letter.lower() not in allowed:
            raise SpfSyntaxError(f"'{term}': unknown macro letter '%{{{letter}}}'")
        digits = int(match[2]) if match[2] else None
        if digits == 0:
            raise SpfSyntaxError(f"'{term}': a macro's label count must not be zero")
        flush()
        tokens.append(("macro", _Macro(letter, digits, bool(match[3]), match[4])))
        i = match.end()
    flush()
    return tokens


def _check_domain_spec(value: str, term: str) -> None:
    """domain-spec = macro-string domain-end; domain-end = "." toplabel ["."] / macro-expand."""
    tokens = _tokenize(value, term)
    if not tokens:
        raise SpfSyntaxError(f"'{term}': empty domain")
    last = tokens[-1]
    if last[0] != "literal":
        return
    tail = last[1]
    tail = tail.removesuffix(".")
    _, dot, toplabel = tail.rpartition(".")
    if not dot or not _TOPLABEL_RE.fullmatch(toplabel):
        raise SpfSyntaxError(f"'{term}': '{value}' does not end in a valid top-level label")


@dataclass(frozen=True)
class MacroContext:
    sender: str  # the MAIL FROM address (or postmaster@HELO)
    ip: IPAddress
    domain: str  # the current domain, <domain> of check_host
    helo: str


def _macro_value(letter: str, ctx: MacroContext) -> str:
    local, _, sender_domain = ctx.sender.rpartition("@")
    if letter == "s":
        return ctx.sender
    if letter == "l":
        return local or "postmaster"
    if letter == "o":
        return sender_domain
    if letter == "d":
        return ctx.domain
    if letter == "i":
        if isinstance(ctx.ip, ipaddress.IPv6Address):
            return ".".join(ctx.ip.exploded.replace(":", ""))
        return str(ctx.ip)
    if letter == "v":
        return "ip6" if isinstance(ctx.ip, ipaddress.IPv6Address) else "in-addr"
    if letter == "h":
        return ctx.helo
    if letter == "c":
        return str(ctx.ip)
    if letter == "t":
        return str(int(time.time()))
    return "unknown"  # p (validated domain of the IP) and r (receiving host): see the module docstring


def expand_macros(value: str, ctx: MacroContext, *, explanation: bool = False) -> str:
    """Expand a macro-string (RFC 7208 7.3): transformers, delimiters, URL-escaping for upper case."""
    out: list[str] = []
    for token in _tokenize(value, value, explanation=explanation):
        if token[0] != "macro":
            out.append(token[1])
            continue
        macro = token[1]
        raw = _macro_value(macro.letter.lower(), ctx)
        parts = re.split("[" + re.escape(macro.delimiters or ".") + "]", raw)
        if macro.reverse:
            parts.reverse()
        if macro.digits is not None:
            parts = parts[-macro.digits :]
        expanded = ".".join(parts)
        if macro.letter.isupper():
            expanded = urllib.parse.quote(expanded, safe="-._~")
        out.append(expanded)
    return "".join(out)


def expand_domain(value: str, ctx: MacroContext) -> str:
    """A domain-spec expanded, final dot removed, left labels dropped past 253 characters (RFC 7208 7.3)."""
    name = expand_macros(value, ctx).rstrip(".").lower()
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name


def valid_domain(name: str) -> bool:
    """RFC 7208 4.3: a multi-label name with 1..63-character labels, at most 253 characters."""
    labels = name.rstrip(".").split(".")
    return len(labels) >= 2 and len(name) <= 253 and all(0 < len(label) <= 63 for label in labels)


def _has_macro(value: str) -> bool:
    return "%" in value


# --- check_host (RFC 7208 section 4 and 5) --------------------------------------------------------


@dataclass(frozen=True)
class SpfResult:
    result: SpfResultCode
    detail: str
    mechanism: str | None = None  # the term that matched, when one did
    lookups: int = 0
    void_lookups: int = 0


class _Abort(Exception):
    """Ends the whole evaluation with a result (limits exceeded, errors in nested records)."""

    def __init__(self, result: SpfResultCode, detail: str) -> None:
        super().__init__(detail)
        self.result: SpfResultCode = result
        self.detail = detail


@dataclass
class _Budget:
    lookups: int = 0
    voids: int = 0

    def spend(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_LOOKUPS:
            raise _Abort("permerror", f"more than {MAX_DNS_LOOKUPS} DNS lookups (limit reached at '{term}')")

    def void(self, name: str) -> None:
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise _Abort("permerror", f"more than {MAX_VOID_LOOKUPS} void DNS lookups (the last for {name})")


def normalize_ip(ip: str | IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address is evaluated as the IPv4 address it carries (RFC 7208 5)."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def check_host(
    ip: str | IPAddress,
    domain: str,
    lookup: Lookup,
    *,
    sender: str | None = None,
    helo: str | None = None,
) -> SpfResult:
    """RFC 7208 ``check_host(<ip>, <domain>, <sender>)``: is ``ip`` authorized to send for ``domain``?

    ``sender`` defaults to ``postmaster@<domain>`` (what RFC 7208 2.4 uses for an empty MAIL FROM), and
    ``helo`` to the domain; both only matter to records that use macros.
    """
    address = normalize_ip(ip)
    domain = domain.rstrip(".").lower()
    evaluation = _Evaluation(
        ip=address, sender=sender or f"postmaster@{domain}", helo=helo or domain, lookup=lookup, budget=_Budget()
    )
    try:
        result, detail, term = await evaluation.check(domain, ())
    except _Abort as abort:
        result, detail, term = abort.result, abort.detail, None
    return SpfResult(
        result=result,
        detail=detail,
        mechanism=term,
        lookups=evaluation.budget.lookups,
        void_lookups=evaluation.budget.voids,
    )


@dataclass
class _Evaluation:
    ip: IPAddress
    sender: str
    helo: str
    lookup: Lookup
    budget: _Budget

    async def check(self, domain: str, path: tuple[str, ...]) -> tuple[SpfResultCode, str, str | None]:
        if not valid_domain(domain):
            return "none", f"'{domain}' is not a valid domain name", None
        if domain in path:
            raise _Abort("permerror", "include loop: " + " -> ".join((*path, domain)))
        answer = await self.lookup(domain, "TXT")
        if answer.unanswered:
            return "temperror", f"DNS {answer.status} for TXT {domain}", None
        records = [r for r in answer.records if is_spf_record(r)]
        if not records:
            return "none", f"{domain} has no SPF record", None
        if len(records) > 1:
            return "permerror", f"{domain} has {len(records)} SPF records", None
        try:
            record = parse_spf(records[0])
        except SpfSyntaxError as exc:
            return "permerror", f"SPF of {domain}: {exc}", None
        ctx = MacroContext(sender=self.sender, ip=self.ip, domain=domain, helo=self.helo)
        for mechanism in record.mechanisms:
            if mechanism.queries_dns:
                self.budget.spend(mechanism.text)
            if await self._matches(mechanism, ctx, (*path, domain)):
                result = QUALIFIER_RESULTS[mechanism.qualifier]
                return result, f"'{mechanism.text}' in the SPF of {domain} matched", mechanism.text
        if record.redirect is not None:  # reached only without 'all', which always matches
            self.budget.spend(f"redirect={record.redirect}")
            target = expand_domain(record.redirect, ctx)
            result, detail, term = await self.check(target, (*path, domain))
            if result == "none":
                raise _Abort("permerror", f"redirect={target}: {detail}")
            return result, detail, term
        return "neutral", f"no mechanism in the SPF of {domain} matched", None

    async def _matches(self, mechanism: Mechanism, ctx: MacroContext, path: tuple[str, ...]) -> bool:
        name = mechanism.name
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            network = mechanism.network
            return network is not None and network.version == self.ip.version and self.ip in network
        target = expand_domain(mechanism.domain_spec, ctx) if mechanism.domain_spec else ctx.domain
        if name == "include":
            result, detail, _ = await self.check(target, path)
            if result == "pass":
                return True
            if result in ("fail", "softfail", "neutral"):
                return False
            if result == "temperror":
                raise _Abort("temperror", detail)
            if result == "none":
                raise _Abort("permerror", f"include:{target} has no SPF record")
            raise _Abort("permerror", detail)
        if name == "a":
            return self._in_networks(await self._addresses(target, count_void=True), mechanism)
        if name == "mx":
            return await self._mx_matches(target, mechanism)
        if name == "ptr":
            return await self._ptr_matches(target)
        # exists: always an A query, whatever the connection's family (RFC 7208 5.7)
        answer = await self.lookup(target, "A")
        self._raise_unanswered(answer, target, "A")
        if answer.void:
            self.budget.void(target)
            return False
        return True

    def _raise_unanswered(self, answer: DnsAnswer, name: str, rdtype: str) -> None:
        if answer.unanswered:
            raise _Abort("temperror", f"DNS {answer.status} for {rdtype} {name}")

    async def _addresses(self, name: str, *, count_void: bool) -> list[IPAddress]:
        rdtype = "A" if self.ip.version == 4 else "AAAA"
        answer = await self.lookup(name, rdtype)
        self._raise_unanswered(answer, name, rdtype)
        if answer.void:
            if count_void:
                self.budget.void(name)
            return []
        return [ipaddress.ip_address(r) for r in answer.records]

    def _in_networks(self, addresses: Sequence[IPAddress], mechanism: Mechanism) -> bool:
        prefix = mechanism.cidr4 if self.ip.version == 4 else mechanism.cidr6
        return any(
            a.version == self.ip.version and self.ip in ipaddress.ip_network(f"{a}/{prefix}", strict=False)
            for a in addresses
        )

    async def _mx_matches(self, target: str, mechanism: Mechanism) -> bool:
        answer = await self.lookup(target, "MX")
        self._raise_unanswered(answer, target, "MX")
        if answer.void:
            self.budget.void(target)
            return False
        hosts = [host for _, host in answer.mx() if host]  # a null MX names no host
        if len(hosts) > MAX_MX_HOSTS:
            raise _Abort("permerror", f"{mechanism.text}: {target} has more than {MAX_MX_HOSTS} MX hosts")
        found = await asyncio.gather(*(self._addresses(host, count_void=False) for host in hosts))
        return any(self._in_networks(addresses, mechanism) for addresses in found)

    async def _ptr_matches(self, target: str) -> bool:
        # RFC 7208 5.5: DNS errors here make the mechanism not match, they do not end the evaluation.
        answer = await self.lookup(self.ip.reverse_pointer, "PTR")
        if answer.status != "ok":
            return False
        for name in (r.rstrip(".").lower() for r in answer.records[:MAX_PTR_NAMES]):
            if not (name == target or name.endswith("." + target)):
                continue
            forward = await self.lookup(name, "A" if self.ip.version == 4 else "AAAA")
            if forward.status == "ok" and any(ipaddress.ip_address(r) == self.ip for r in forward.records):
                return True
        return False


# --- static analysis ------------------------------------------------------------------------------

AnalysisStatus = Literal["ok", "missing", "invalid", "unanswered"]


@dataclass
class SpfAnalysis:
    """Whether the SPF policy of a domain is usable, and what it costs (see the module docstring)."""

    status: AnalysisStatus
    detail: str
    record: str | None = None
    lookups: int = 0
    void_lookups: int = 0
    followed: list[str] = field(default_factory=list)  # domains whose records were read (include/redirect)
    warnings: list[str] = field(default_factory=list)


class _Stop(Exception):
    def __init__(self, status: AnalysisStatus, detail: str) -> None:
        super().__init__(detail)
        self.status: AnalysisStatus = status
        self.detail = detail


_MAX_RECORDS_WALKED = 40  # stop descending once the tree is known to be far too big


@dataclass
class _Walker:
    lookup: Lookup
    lookups: int = 0
    voids: int = 0
    truncated: bool = False
    followed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    async def walk(self, domain: str, record: SpfRecord, path: tuple[str, ...]) -> None:
        answers = await self._prefetch(record, domain)
        for mechanism in record.mechanisms:
            if mechanism.queries_dns:
                self.lookups += 1
            if mechanism.name == "ptr":
                self._note(
                    f"SPF of {domain} uses the deprecated 'ptr' mechanism (RFC 7208 5.5): slow, some receivers skip it"
                )
            spec = mechanism.domain_spec
            if spec is not None and _has_macro(spec):
                if mechanism.name == "include":
                    self._note(
                        f"'{mechanism.text}' (SPF of {domain}) holds macros: it depends on the sender, not followed"
                    )
                continue
            target = (spec or domain).rstrip(".").lower()
            if mechanism.name == "include":
                await self._follow(target, path, "include", answers.get((target, "TXT")))
            elif mechanism.name == "a":
                if all(answers[(target, t)].void for t in ("A", "AAAA")):
                    self.voids += 1
            elif mechanism.name == "mx":
                mx = answers[(target, "MX")]
                if mx.void:
                    self.voids += 1
                elif len([h for _, h in mx.mx() if h]) > MAX_MX_HOSTS:
                    raise _Stop(
                        "invalid",
                        f"'{mechanism.text}': {target} has more than {MAX_MX_HOSTS} MX hosts, "
                        "which makes the mechanism a permanent error (RFC 7208 4.6.4)",
                    )
            elif mechanism.name == "exists" and answers[(target, "A")].void:
                self.voids += 1
        if record.redirect is not None:
            if record.has_all:
                self._note(f"SPF of {domain}: 'redirect={record.redirect}' is ignored because the record has 'all'")
            elif _has_macro(record.redirect):
                self.lookups += 1
            else:
                self.lookups += 1
                target = record.redirect.rstrip(".").lower()
                await self._follow(target, path, "redirect", answers.get((target, "TXT")))

    async def _prefetch(self, record: SpfRecord, domain: str) -> dict[tuple[str, str], DnsAnswer]:
        """Every static name this record queries, looked up concurrently before walking it in order."""
        keys: dict[tuple[str, str], None] = {}
        for mechanism in record.mechanisms:
            spec = mechanism.domain_spec
            if spec is not None and _has_macro(spec):
                continue
            target = (spec or domain).rstrip(".").lower()
            types = {"include": ("TXT",), "a": ("A", "AAAA"), "mx": ("MX",), "exists": ("A",)}.get(mechanism.name, ())
            for rdtype in types:
                keys[(target, rdtype)] = None
        if record.redirect_applies and record.redirect is not None and not _has_macro(record.redirect):
            keys[(record.redirect.rstrip(".").lower(), "TXT")] = None
        found = await asyncio.gather(*(self.lookup(name, rdtype) for name, rdtype in keys))
        return dict(zip(keys, found, strict=True))

    async def _follow(self, target: str, path: tuple[str, ...], via: str, answer: DnsAnswer | None) -> None:
        if target in path:
            raise _Stop("invalid", f"{via} loop: " + " -> ".join((*path, target)))
        if self.lookups > MAX_DNS_LOOKUPS or len(self.followed) >= _MAX_RECORDS_WALKED:
            self.truncated = True  # already over the limit: the exact total no longer matters
            return
        if answer is None:
            answer = await self.lookup(target, "TXT")
        if answer.unanswered:
            raise _Stop("unanswered", f"DNS {answer.status} for TXT {target} ({via}:{target})")
        if answer.status == "nxdomain":
            raise _Stop("invalid", f"{via}:{target} does not exist: receivers return permerror")
        records = [r for r in answer.records if is_spf_record(r)]
        if not records:
            raise _Stop("invalid", f"{via}:{target} has no SPF record: receivers return permerror")
        if len(records) > 1:
            raise _Stop("invalid", f"{via}:{target} has {len(records)} SPF records: receivers return permerror")
        try:
            record = parse_spf(records[0])
        except SpfSyntaxError as exc:
            raise _Stop("invalid", f"syntax error in the SPF of {target} ({via}:{target}): {exc}") from None
        self.followed.append(target)
        await self.walk(target, record, (*path, target))

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


async def analyze_spf(domain: str, lookup: Lookup) -> SpfAnalysis:
    """Find the one SPF record of ``domain`` and validate the whole tree under it."""
    domain = domain.rstrip(".").lower()
    answer = await lookup(domain, "TXT")
    if answer.unanswered:
        return SpfAnalysis("unanswered", f"DNS {answer.status} for TXT {domain}")
    if answer.status == "nxdomain":
        return SpfAnalysis("missing", f"no SPF record: {domain} does not exist")
    records = [r for r in answer.records if is_spf_record(r)]
    if not records:
        return SpfAnalysis("missing", f"{domain} has no SPF record (a TXT record starting with 'v=spf1')")
    if len(records) > 1:
        return SpfAnalysis(
            "invalid",
            f"{domain} has {len(records)} SPF records; receivers treat more than one as a permanent error "
            "(RFC 7208 4.5): merge them into one",
        )
    text = records[0]
    try:
        record = parse_spf(text)
    except SpfSyntaxError as exc:
        return SpfAnalysis("invalid", f"SPF syntax error: {exc}", record=text)
    walker = _Walker(lookup)
    try:
        await walker.walk(domain, record, (domain,))
    except _Stop as stop:
        return SpfAnalysis(
            stop.status,
            stop.detail,
            record=text,
            lookups=walker.lookups,
            void_lookups=walker.voids,
            followed=walker.followed,
        )
    result = SpfAnalysis(
        "ok",
        f"SPF record found ({walker.lookups} DNS lookups)",
        record=text,
        lookups=walker.lookups,
        void_lookups=walker.voids,
        followed=walker.followed,
        warnings=list(walker.notes),
    )
    if walker.lookups > MAX_DNS_LOOKUPS:
        count = f"at least {walker.lookups}" if walker.truncated else str(walker.lookups)
        result.status = "invalid"
        result.detail = (
            f"SPF needs {count} DNS lookups through its includes; the limit is {MAX_DNS_LOOKUPS} "
            "(RFC 7208 4.6.4), past which receivers return permerror: flatten or drop includes"
        )
    elif walker.voids > MAX_VOID_LOOKUPS:
        result.status = "invalid"
        result.detail = (
            f"SPF makes {walker.voids} void lookups (names that do not exist or have no address); "
            f"past {MAX_VOID_LOOKUPS} receivers return permerror (RFC 7208 4.6.4)"
        )
    else:
        result.warnings[:0] = _top_level_warnings(domain, record)
    return result


def _top_level_warnings(domain: str, record: SpfRecord) -> list[str]:
    qualifier = record.all_qualifier
    if qualifier == "+":
        return [f"SPF of {domain} ends with '+all': every server on the internet may send as {domain}"]
    if qualifier == "?":
        return [f"SPF of {domain} ends with '?all' (neutral): it does not tell receivers to distrust other senders"]
    if qualifier is None and record.redirect is None:
        return [f"SPF of {domain} has no 'all' mechanism: mail from servers it does not list gets 'neutral'"]
    return []


__all__ = [
    "DNS_MECHANISMS",
    "MAX_DNS_LOOKUPS",
    "MAX_VOID_LOOKUPS",
    "MECHANISMS",
    "DnsAnswer",
    "Lookup",
    "LookupStatus",
    "MacroContext",
    "Mechanism",
    "SpfAnalysis",
    "SpfRecord",
    "SpfResult",
    "SpfResultCode",
    "SpfSyntaxError",
    "analyze_spf",
    "check_host",
    "expand_domain",
    "expand_macros",
    "is_spf_record",
    "normalize_ip",
    "parse_spf",
    "valid_domain",
]
