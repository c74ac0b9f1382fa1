"""DMARC policy records (RFC 7489 section 6), parsed and validated.

Discovery (RFC 7489 6.6.3): the TXT records at ``_dmarc.<domain>`` that start with ``v=DMARC1`` are the
candidates; none there sends the receiver to the organizational domain; more than one means no DMARC
at all. We treat a record starting with ``v=dmarc1`` in another case as a broken DMARC record (the
version must match exactly, so receivers discard it) rather than as no record: the user meant one.

The organizational domain is approximated by the last two labels of the domain. The real rule uses the
Public Suffix List (``mail.example.co.uk`` -> ``example.co.uk``, where we would say ``co.uk``); shipping
and refreshing the PSL is not worth it for a check whose worst case is one extra, harmless lookup.

Validated: ``p`` (required) ``sp`` ``np`` in none|quarantine|reject (case-insensitive, as ABNF strings
are), ``pct`` 0..100, ``adkim``/``aspf`` r|s, ``rua``/``ruf`` lists of URIs with an optional ``!size``,
``fo`` 0|1|d|s, ``ri`` a number, ``rf`` a list of format names. Unknown tags are ignored (RFC 7489 6.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus_api.dns_checks.dkim import TagListError, parse_tag_list

POLICIES = ("none", "quarantine", "reject")

_VERSION_RE = re.compile(r"[ \t]*v[ \t]*=[ \t]*DMARC1[ \t]*(;|$)")
_LOOSE_VERSION_RE = re.compile(r"[ \t]*v[ \t]*=[ \t]*dmarc1\b", re.IGNORECASE)
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s,!]+")
_SIZE_RE = re.compile(r"[0-9]+[kmgtKMGT]?")


class DmarcError(ValueError):
    """The record is not a valid DMARC record; the message says why."""


@dataclass(frozen=True)
class DmarcRecord:
    text: str
    policy: str  # p
    subdomain_policy: str | None  # sp
    pct: int
    adkim: str
    aspf: str
    rua: tuple[str, ...]
    ruf: tuple[str, ...]
    tags: dict[str, str]


def is_dmarc_candidate(text: str) -> bool:
    """Whether a TXT record at ``_dmarc.*`` is meant as a DMARC record (``v=DMARC1``, any case)."""
    return _LOOSE_VERSION_RE.match(text) is not None


def organizational_domain(domain: str) -> str:
    """The last two labels: an approximation of the PSL-based rule (see the module docstring)."""
    labels = domain.rstrip(".").lower().split(".")
    return ".".join(labels[-2:])


def _policy(tags: dict[str, str], name: str) -> str:
    value = tags[name].lower()
    if value not in POLICIES:
        raise DmarcError(f"'{name}={tags[name]}' is not none, quarantine or reject")
    return value


def _uris(tags: dict[str, str], name: str) -> tuple[str, ...]:
    if name not in tags:
        return ()
    found: list[str] = []
    for item in tags[name].split(","):
        entry = item.strip(" \t")
        uri, bang, size = entry.partition("!")
        if not _URI_RE.fullmatch(uri) or (bang and not _SIZE_RE.fullmatch(size)):
            raise DmarcError(f"'{name}=': '{entry}' is not a report URI (like mailto:dmarc@example.com)")
        if uri.lower().startswith("mailto:") and "@" not in uri:
            raise DmarcError(f"'{name}=': '{uri}' has no address")
        found.append(uri)
    return tuple(found)


def parse_dmarc(text: str) -> DmarcRecord:
    """Validate one DMARC record; raise ``DmarcError`` with the reason."""
    if _VERSION_RE.match(text) is None:
        raise DmarcError("the record must start with exactly 'v=DMARC1'")
    try:
        tags = parse_tag_list(text)
    except TagListError as exc:
        raise DmarcError(str(exc)) from None
    if "p" not in tags:
        raise DmarcError("no 'p=' tag: the policy (none, quarantine or reject) is required")
    policy = _policy(tags, "p")
    subdomain_policy = _policy(tags, "sp") if "sp" in tags else None
    if "np" in tags:
        _policy(tags, "np")
    pct = 100
    if "pct" in tags:
        if not tags["pct"].isdigit() or int(tags["pct"]) > 100:
            raise DmarcError(f"'pct={tags['pct']}' is not a percentage from 0 to 100")
        pct = int(tags["pct"])
    alignment: dict[str, str] = {}
    for name in ("adkim", "aspf"):
        value = tags.get(name, "r").lower()
        if value not in ("r", "s"):
            raise DmarcError(f"'{name}={tags[name]}' is not r (relaxed) or s (strict)")
        alignment[name] = value
    rua = _uris(tags, "rua")
    ruf = _uris(tags, "ruf")
    if "fo" in tags and any(o.strip(" \t") not in ("0", "1", "d", "s") for o in tags["fo"].split(":")):
        raise DmarcError(f"'fo={tags['fo']}' is not a list of 0, 1, d and s")
    if "ri" in tags and not tags["ri"].isdigit():
        raise DmarcError(f"'ri={tags['ri']}' is not a number of seconds")
    if "rf" in tags and any(not re.fullmatch(r"[A-Za-z0-9\-]+", f.strip(" \t")) for f in tags["rf"].split(":")):
        raise DmarcError(f"'rf={tags['rf']}' is not a list of report formats")
    return DmarcRecord(
        text=text,
        policy=policy,
        subdomain_policy=subdomain_policy,
        pct=pct,
        adkim=alignment["adkim"],
        aspf=alignment["aspf"],
        rua=rua,
        ruf=ruf,
        tags=tags,
    )


__all__ = [
    "POLICIES",
    "DmarcError",
    "DmarcRecord",
    "is_dmarc_candidate",
    "organizational_domain",
    "parse_dmarc",
]
