"""Amazon SNS messages (how Amazon SES delivers bounce and complaint notifications over HTTPS).

An SNS message is verified before anything in it is used:

1. ``SigningCertURL`` (and, for a confirmation, ``SubscribeURL``) must match
   ``NIMBUS_PROVIDER_HOOKS_SNS_URL_PATTERN`` (by default ``https://sns.<region>.amazonaws.com/``), so a forger
   cannot point us at a certificate of their own; the fetch goes through the egress policy.
2. The certificate (cached per URL in the process) verifies ``Signature`` over the canonical string of the
   message's fields (``Message``, ``MessageId``, ``Subject`` when present, ``SubscribeURL``, ``Timestamp``,
   ``Token``, ``TopicArn``, ``Type``: each name and value on its own line), with SHA1 for
   ``SignatureVersion`` 1 and SHA256 for 2 (RSA PKCS#1 v1.5).
3. ``Timestamp`` is within ``NIMBUS_PROVIDER_HOOKS_MAX_AGE_SECONDS``, and ``TopicArn`` is the hook's when
   the hook is pinned to one.

Then a ``SubscriptionConfirmation`` is confirmed by a GET of its ``SubscribeURL``, a ``Notification``'s
``Message`` is read as an SES notification (``reports.ses``), and an ``UnsubscribeConfirmation`` changes
nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA1, SHA256, HashAlgorithm
from cryptography.x509 import load_pem_x509_certificate

from nimbus_api.kit.net import NetContext
from nimbus_api.provider_hooks.errors import (
    HookCertUrlRefused,
    HookPayloadMalformed,
    HookSignatureInvalid,
    HookTopicMismatch,
    HookUpstreamFailed,
)
from nimbus_api.provider_hooks.signatures import check_fresh
from nimbus_api.webhooks.transport import EgressBackend

_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
MAX_CERT_BYTES = 64 * 1024
_CACHE_SIZE = 32


@dataclass(frozen=True)
class SnsRules:
    net: NetContext
    url_pattern: str
    max_age: int
    timeout: float


_certs: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()


def envelope(obj: Any) -> dict[str, str]:
    if not isinstance(obj, dict) or obj.get("Type") not in TYPES:
        raise HookPayloadMalformed("not an Amazon SNS message (`Type` is missing or unknown)")
    fields = {k: v for k, v in obj.items() if isinstance(v, str)}
    for name in ("MessageId", "TopicArn", "Timestamp", "SignatureVersion", "Signature", "SigningCertURL", "Message"):
        if not fields.get(name):
            raise HookPayloadMalformed(f"the SNS message has no `{name}`")
    if fields["Type"] != "Notification" and not (fields.get("SubscribeURL") and fields.get("Token")):
        raise HookPayloadMalformed("an SNS subscription message carries `SubscribeURL` and `Token`")
    return fields


def string_to_sign(fields: dict[str, str]) -> bytes:
    names = _NOTIFICATION_FIELDS if fields["Type"] == "Notification" else _CONFIRMATION_FIELDS
    return "".join(f"{name}\n{fields[name]}\n" for name in names if name in fields).encode()


def check_url(url: str, pattern: str) -> None:
    parts = urlsplit(url)
    if not re.match(pattern, url) or parts.username or parts.password or "\\" in url:
        raise HookCertUrlRefused("the URL is not one of Amazon SNS's")


async def http_get(url: str, rules: SnsRules, limit: int) -> bytes:
    """GET through the egress policy; the body (at most ``limit`` bytes) of a 2xx answer. The body is read
    as a stream and the read stops past ``limit``; the whole call is bounded by the timeout."""
    pool = httpcore.AsyncConnectionPool(
        ssl_context=rules.net.tls, retries=0, network_backend=EgressBackend(rules.net.policy, rules.net.resolver)
    )
    timeout = {"connect": rules.timeout, "read": rules.timeout, "write": rules.timeout, "pool": rules.timeout}
    try:
        async with (
            asyncio.timeout(rules.timeout),
            pool,
            pool.stream("GET", url, extensions={"timeout": timeout}) as response,
        ):
            body = b""
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > limit:
                    break
    except Exception as exc:
        raise HookUpstreamFailed(f"GET {urlsplit(url).hostname} failed ({type(exc).__name__})") from None
    if not 200 <= response.status < 300 or len(body) > limit:
        raise HookUpstreamFailed(f"GET {urlsplit(url).hostname} answered {response.status}")
    return body


async def certificate(url: str, rules: SnsRules) -> rsa.RSAPublicKey:
    cached = _certs.get(url)
    if cached is not None:
        _certs.move_to_end(url)
        return cached
    pem = await http_get(url, rules, MAX_CERT_BYTES)
    try:
        key = load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise HookUpstreamFailed("the SNS signing certificate cannot be read") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise HookUpstreamFailed("the SNS signing certificate is not an RSA certificate")
    _certs[url] = key
    while len(_certs) > _CACHE_SIZE:
        _certs.popitem(last=False)
    return key


def _moment(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HookPayloadMalformed("the SNS `Timestamp` is not an ISO 8601 time") from None


async def verify(fields: dict[str, str], rules: SnsRules, topic_arn: str | None, now: datetime) -> None:
    """Every check above but the confirmation; raises the problem of the first that fails."""
    if topic_arn is not None and fields["TopicArn"] != topic_arn:
        raise HookTopicMismatch("this hook is pinned to another SNS topic")
    check_url(fields["SigningCertURL"], rules.url_pattern)
    if fields["Type"] != "Notification":
        check_url(fields["SubscribeURL"], rules.url_pattern)
    algorithm: HashAlgorithm
    if fields["SignatureVersion"] == "1":
        algorithm = SHA1()  # noqa: S303 (SNS SignatureVersion 1 is SHA1withRSA)
    elif fields["SignatureVersion"] == "2":
        algorithm = SHA256()
    else:
        raise HookSignatureInvalid("unknown SNS SignatureVersion")
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except binascii.Error:
        raise HookSignatureInvalid("the SNS signature is not base64") from None
    key = await certificate(fields["SigningCertURL"], rules)
    try:
        key.verify(signature, string_to_sign(fields), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise HookSignatureInvalid("the SNS signature does not verify") from None
    check_fresh(_moment(fields["Timestamp"]), now, rules.max_age)


async def confirm(fields: dict[str, str], rules: SnsRules) -> None:
    await http_get(fields["SubscribeURL"], rules, MAX_CERT_BYTES)
