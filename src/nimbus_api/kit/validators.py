"""Reusable pydantic field types for input that ends up in mail headers, DNS names or protocol commands.

CR and LF are refused in anything that can reach a header or an SMTP/IMAP command line, which closes
header and command injection at the door rather than escaping it later.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field

from nimbus_api.kit import special_use
from nimbus_api.kit.schemas import SINGLE_LINE_PATTERN, as_sent
from nimbus_api.kit.schemas import StrictModel as StrictModel

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _no_line_breaks(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("must not contain CR, LF or NUL characters")
    return value


def _special_use_name(domain: str) -> str | None:
    """The special-use top-level name (``kit.special_use``) the domain is under, if any."""
    name = domain.rsplit(".", 1)[-1].casefold()
    return name if name in special_use.REFUSED_BY_DEFAULT else None


def _validated(value: str) -> tuple[str, str, str | None]:
    """(normalized address, ASCII domain, special-use name or None), syntax checked by email-validator.

    The library refuses ``.invalid`` and ``.localhost`` outright and ``.test`` unless told it runs in a
    test environment, through a module-level list, with no per-call switch. So the special-use name is
    set aside here: the address is checked with that last label read as ``test`` (which the per-call
    ``test_environment`` lets through; every other rule, IDNA included, still applies) and the label is
    put back after normalization. Whether the name is accepted is the caller's decision."""
    local, _, domain = value.rpartition("@")
    name = _special_use_name(domain) if local else None
    candidate = value
    if name is not None and name != "test":
        parent, dot, _ = domain.rpartition(".")
        candidate = f"{local}@{parent}{dot}test"
    result = validate_email(candidate, check_deliverability=False, test_environment=True)
    normalized, ascii_domain = result.normalized, result.ascii_domain.lower()
    if name is not None and name != "test":
        normalized = normalized.removesuffix("test") + name
        ascii_domain = ascii_domain.removesuffix("test") + name
    # A label that only normalizes to ``test`` (full-width letters, say) is under .test all the same.
    return normalized, ascii_domain, name or _special_use_name(ascii_domain)


def _email(value: str) -> str:
    _no_line_breaks(value)
    try:
        normalized, _, name = _validated(value)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    if name is not None and not special_use.allowed():
        domain = normalized.rpartition("@")[2]
        raise ValueError(f"not a valid email address: {special_use.refusal(domain, name)}")
    return normalized


def _hostname(value: str) -> str:
    _no_line_breaks(value)
    host = value.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("not a valid host name") from exc
    labels = ascii_host.split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError("not a valid host name")
    return ascii_host


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError("must be a single DNS label (letters, digits, '-' or '_', at most 63)")
    return value.lower()


def _any_case(word: str) -> str:
    return "".join(f"[{ch}{ch.upper()}]" for ch in word)


# The domains email_validator refuses as special-use (its SPECIAL_USE_DOMAIN_NAMES, written out so that
# the document does not change with the library's run-time switches), as a pattern that ECMA-262, Python
# and Rust read alike (no inline flags).
SPECIAL_USE_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
SPECIAL_USE_PATTERN = r"[.@](" + "|".join(_any_case(name) for name in SPECIAL_USE_DOMAINS) + r")\.?$"

# A DNS label as the validator checks it, said without look-arounds (ECMA-262, Python and Rust alike).
DNS_LABEL_PATTERN = r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$"

HeaderText = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=SINGLE_LINE_PATTERN, description="One line, at most 200 characters."),
    as_sent(200),
]
SingleLine = Annotated[str, Field(min_length=1, max_length=320, pattern=SINGLE_LINE_PATTERN), as_sent(320)]
EmailAddress = Annotated[
    str,
    Field(
        max_length=254,
        examples=["ada@example.com"],
        description="An email address; internationalized addresses (RFC 6531, `zoë@bücher.example`) are accepted "
        "and kept as given (the domain lower-cased). Addresses under the special-use domains `arpa`, `invalid`, "
        "`local`, `localhost`, `onion` and `test` are refused.",
        json_schema_extra={"format": "email", "not": {"pattern": SPECIAL_USE_PATTERN}},
    ),
    as_sent(254),
    AfterValidator(_email),
]
Hostname = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        examples=["smtp.example.com"],
        description="A host name (internationalized names are accepted) or an IP address.",
    ),
    as_sent(255),
    AfterValidator(_hostname),
]
DnsLabel = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN, examples=["s1"]),
    as_sent(63, pattern=DNS_LABEL_PATTERN),
    AfterValidator(_dns_label),
]
Port = Annotated[int, Field(ge=1, le=65535)]


def email_domain(address: str) -> str:
    """The ASCII (IDNA) domain of an address already validated (so whatever the special-use policy says now:
    a stored address stays usable when the setting is turned off), lower-case."""
    return _validated(address)[1]
