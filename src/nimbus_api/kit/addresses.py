"""Addresses as they go on the wire, for internationalized mail.

We keep addresses as people typed them (``erin@bücher.test``, ``zoë@example.org``, normalized by
email-validator), and write them differently depending on where they go:

* **the domain** is written as IDNA A-labels (``xn--bcher-kva.test``; IDNA 2008 with the UTS #46
  mapping, the ``idna`` package, as email-validator and browsers do) in DNS queries, in the SMTP
  envelope and in header fields. Every server understands an A-label, so an IDN domain alone never
  needs SMTPUTF8;
* **a non-ASCII local part** (``zoë@``) cannot be encoded: it needs SMTPUTF8 (RFC 6531) in the
  envelope and UTF-8 header fields (RFC 6532). ``needs_smtputf8`` says so; the SMTP adapter then asks
  for SMTPUTF8, or fails that one message with ``smtp.smtputf8_unsupported`` when the server does not
  offer it (never the connection, never the inbox).

Display names and subjects are another matter: RFC 2047 encoded words, written by ``sending.mime``.
"""

from __future__ import annotations

import idna


class UnencodableAddress(ValueError):
    """The domain has no IDNA form (it was not validated on the way in)."""


def ascii_domain(domain: str) -> str:
    """The domain in A-labels: unchanged when ASCII, else IDNA 2008 (UTS #46), IDNA 2003 as a last resort
    for the few names the two disagree on (``ß``, emoji: email-validator refuses those on input)."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        try:
            return domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UnencodableAddress(f"the domain {domain!r} has no IDNA form") from exc


def wire_address(address: str) -> str:
    """``local@a-label-domain``: the form for the SMTP envelope and header fields. The local part is kept
    as it is: when it is not ASCII, only SMTPUTF8 can carry it (``needs_smtputf8``)."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local}@{ascii_domain(domain)}"


def needs_smtputf8(address: str) -> bool:
    """True when the address cannot be written in ASCII at all: its local part is not ASCII."""
    return not address.rpartition("@")[0].isascii()


__all__ = ["UnencodableAddress", "ascii_domain", "needs_smtputf8", "wire_address"]
