"""DKIM public-key records (RFC 6376 3.6.1), with RFC 8463 (ed25519) and RFC 8301 (key sizes, hashes).

A key record is a tag=value list (RFC 6376 3.2) published as TXT at ``<selector>._domainkey.<domain>``;
the TXT strings of one record are joined before parsing (a 2048-bit RSA key does not fit one string).
We load the key with ``cryptography`` instead of just checking base64: a record whose ``p=`` decodes
but is not a key fails every signature, and that is exactly what a user pasting a truncated key gets.

What makes a record invalid, in the words verifiers use: a duplicated tag (the whole list is invalid),
``v=`` that is not first or not ``DKIM1``, an unknown ``k=`` key type, a missing ``p=``, an empty
``p=`` (the key was revoked), ``p=`` that is not base64 or not a key of type ``k=``, an RSA key under
1024 bits (RFC 8301: verifiers may ignore it, the large ones do), ``h=`` that excludes sha256 (sha1
signatures are no longer accepted) and ``s=`` that excludes email. A 1024-bit RSA key and ``t=y``
(testing) are warnings.

RSA keys are expected as DER SubjectPublicKeyInfo (what every signer publishes); ``cryptography`` also
accepts a bare PKCS#1 RSAPublicKey, which RFC 6376's wording describes, so both pass.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

MIN_RSA_BITS = 1024
RECOMMENDED_RSA_BITS = 2048


class TagListError(ValueError):
    """The text is not a valid tag=value list."""


class DkimKeyError(ValueError):
    """The record is not a usable DKIM key; the message says why, for a user to read."""


_TAG_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_WSP = " \t\r\n"


def parse_tag_list(text: str) -> dict[str, str]:
    """RFC 6376 3.2 tag-list: ``name=value`` pairs separated by ``;``, whitespace around them ignored.

    Names are case-sensitive; a duplicated name invalidates the whole list. Values keep inner whitespace
    (callers strip it where the grammar allows it, as in ``p=``). Empty specs (``;;`` or a trailing
    ``;``) are tolerated, as verifiers do. Insertion order is kept: callers check which tag comes first.
    """
    tags: dict[str, str] = {}
    for spec in text.split(";"):
        if not spec.strip(_WSP):
            continue
        name, equals, value = spec.partition("=")
        name = name.strip(_WSP)
        value = value.strip(_WSP)
        if not equals:
            raise TagListError(f"'{spec.strip(_WSP)}' is not a tag=value pair")
        if not _TAG_NAME_RE.fullmatch(name):
            raise TagListError(f"'{name}' is not a valid tag name")
        if any(not (0x21 <= ord(c) <= 0x7E or c in _WSP) for c in value):
            raise TagListError(f"the value of '{name}=' contains characters not allowed in a tag value")
        if name in tags:
            raise TagListError(f"tag '{name}=' appears more than once")
        tags[name] = value
    return tags


@dataclass(frozen=True)
class DkimKey:
    key_type: str  # rsa | ed25519
    bits: int
    testing: bool
    tags: dict[str, str]
    warnings: tuple[str, ...] = ()


def looks_like_dkim(text: str) -> bool:
    """Whether a TXT record at a selector name is meant as a DKIM key (and not, say, a wildcard's SPF)."""
    try:
        tags = parse_tag_list(text)
    except TagListError:
        return text.lstrip().startswith("v=DKIM1")
    return "p" in tags or tags.get("v") == "DKIM1" or "k" in tags


def parse_dkim_key(text: str) -> DkimKey:
    """Validate a key record and load its key; raise ``DkimKeyError`` with the reason."""
    try:
        tags = parse_tag_list(text)
    except TagListError as exc:
        raise DkimKeyError(str(exc)) from None
    if "v" in tags:
        if next(iter(tags)) != "v":
            raise DkimKeyError("'v=' must be the first tag")
        if tags["v"] != "DKIM1":
            raise DkimKeyError(f"'v={tags['v']}' is not 'v=DKIM1'")
    key_type = tags.get("k", "rsa").lower()
    if key_type not in ("rsa", "ed25519"):
        raise DkimKeyError(f"unknown key type 'k={tags['k']}' (rsa or ed25519)")
    if "p" not in tags:
        raise DkimKeyError("no 'p=' tag (the public key)")
    encoded = re.sub(r"[ \t\r\n]", "", tags["p"])
    if not encoded:
        raise DkimKeyError("empty 'p=': the key has been revoked, signatures with it fail")
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise DkimKeyError("'p=' is not valid base64 (was the key truncated when pasted?)") from None

    warnings: list[str] = []
    if key_type == "rsa":
        try:
            key = load_der_public_key(der)
        except (ValueError, UnsupportedAlgorithm):
            raise DkimKeyError("'p=' does not hold an RSA public key (DER SubjectPublicKeyInfo)") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise DkimKeyError("'p=' holds a key that is not RSA, but the record says 'k=rsa'")
        bits = key.key_size
        if bits < MIN_RSA_BITS:
            raise DkimKeyError(f"the RSA key has {bits} bits; verifiers ignore keys under {MIN_RSA_BITS} bits")
        if bits < RECOMMENDED_RSA_BITS:
            warnings.append(f"the DKIM key has {bits} bits; {RECOMMENDED_RSA_BITS} is recommended (RFC 8301)")
    else:
        if len(der) != 32:
            raise DkimKeyError(f"an ed25519 key is 32 bytes; 'p=' decodes to {len(der)}")
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(der)
        except (ValueError, UnsupportedAlgorithm):
            raise DkimKeyError("'p=' is not a valid ed25519 public key") from None
        bits = 256

    if "h" in tags:
        hashes = {h.strip(_WSP).lower() for h in tags["h"].split(":")}
        if "sha256" not in hashes:
            raise DkimKeyError(f"'h={tags['h']}' excludes sha256; sha1 signatures are no longer accepted (RFC 8301)")
    if "s" in tags:
        services = {s.strip(_WSP).lower() for s in tags["s"].split(":")}
        if not services & {"*", "email"}:
            raise DkimKeyError(f"'s={tags['s']}': the key is not for email")
    testing = False
    if "t" in tags:
        flags = {f.strip(_WSP).lower() for f in tags["t"].split(":")}
        testing = "y" in flags
        if testing:
            warnings.append("the DKIM key is in testing mode (t=y): receivers may treat signed mail as unsigned")
    return DkimKey(key_type=key_type, bits=bits, testing=testing, tags=tags, warnings=tuple(warnings))


__all__ = [
    "MIN_RSA_BITS",
    "DkimKey",
    "DkimKeyError",
    "TagListError",
    "looks_like_dkim",
    "parse_dkim_key",
    "parse_tag_list",
]
