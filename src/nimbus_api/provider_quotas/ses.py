"""Amazon SES ``GetSendQuota``: the adapter (no ORM, no settings object; errors in our own hierarchy).

Why aiobotocore: the call runs in the worker's event loop like every other network call (no thread pool
to size, cancellation and timeouts work as for SMTP and IMAP), it signs with botocore exactly as boto3
does, and its aiohttp connector takes a resolver, which is where the egress policy goes: the endpoint's
name is resolved by our resolver and only addresses the policy allows are handed to the connection, so
the address checked is the address used (an IP-literal endpoint, which aiohttp never resolves, is
checked before the call). Only the web ports (443, 80) pass, plus what ``NIMBUS_EGRESS_ALLOW`` lists.

Errors (``QuotaError.code``), never carrying a secret or AWS's own text:

    ses.auth_failed       the key pair is refused (InvalidClientTokenId, SignatureDoesNotMatch, ...)
    ses.access_denied     the key may not call ses:GetSendQuota
    ses.throttled         SES throttled the call: the next refresh tries again
    ses.unreachable       no answer (connection refused, timeout)
    ses.host_not_allowed  the endpoint resolves to an address (or uses a port) the egress policy refuses
    ses.host_unresolvable the endpoint's name does not resolve
    ses.error             anything else SES answered (its error code is named)
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.egress import EgressError, HostNotAllowed, HostUnresolvable, resolve_addresses
from nimbus_api.kit.net import NetContext

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver
    from botocore.exceptions import ClientError

REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"
_REGION = re.compile(REGION_PATTERN)

_AUTH_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "AuthFailure",
        "MissingAuthenticationToken",
    }
)
# botocore's DEBUG records carry the signed request's headers (the access key id, the signature): never
# below INFO in any process that imports this adapter, whatever the log level.
for _name in ("botocore", "aiobotocore"):
    if logging.getLogger(_name).level < logging.INFO:  # NOTSET too: the root's DEBUG would reach them
        logging.getLogger(_name).setLevel(logging.INFO)

_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})
_THROTTLED_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException"})


@dataclass(frozen=True)
class SesCredentials:
    access_key_id: str
    secret_access_key: Secret
    region: str


@dataclass(frozen=True)
class SendQuota:
    """``max_24_hour_send`` -1 means unlimited (as SES says)."""

    max_24_hour_send: float
    sent_last_24_hours: float
    max_send_rate: float


class QuotaError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def endpoint_for(region: str, endpoint_url: str | None) -> str:
    if not _REGION.match(region):
        raise ValueError(f"not an AWS region: {region!r}")
    return endpoint_url or f"https://email.{region}.amazonaws.com"


def _policy_resolver(net: NetContext) -> AbstractResolver:
    """aiohttp's resolver, through our resolver and the egress policy: only allowed addresses come back.
    (aiohttp and botocore are imported when a quota is read, not when a process starts.)"""
    from aiohttp.abc import AbstractResolver, ResolveResult

    class PolicyResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            found = await resolve_addresses(net.resolver, host)
            allowed = [a for a in found if net.policy.address_allowed(a, host)]
            if not allowed:
                raise OSError(f"{host} resolves to no address outbound connections may reach")
            return [
                ResolveResult(
                    hostname=host,
                    host=str(a),
                    port=port,
                    family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
                for a in allowed
            ]

        async def close(self) -> None:
            return None

    return PolicyResolver()


async def _check_endpoint(net: NetContext, url: str) -> None:
    """The endpoint's port and addresses against the policy, before anything is sent."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme not in ("https", "http") or not host:
        raise HostNotAllowed(f"{url} is not an http(s) URL")
    if not net.policy.web_port_allowed(port):
        raise HostNotAllowed(f"port {port} is not allowed for outbound connections (operator: NIMBUS_EGRESS_ALLOW)")
    if not any(net.policy.address_allowed(a, host) for a in await resolve_addresses(net.resolver, host)):
        raise HostNotAllowed(f"{host} resolves to an address outbound connections may not reach")


async def get_send_quota(
    credentials: SesCredentials,
    *,
    net: NetContext,
    endpoint_url: str | None,
    timeout: float,
    ca_file: str | None = None,
) -> SendQuota:
    """One ``GetSendQuota`` call, bounded by ``timeout``; raises ``QuotaError``. TLS is verified against
    the system's CAs (botocore builds the context) plus ``ca_file`` (``NIMBUS_EXTRA_CA_FILE``)."""
    import aiohttp
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        url = endpoint_for(credentials.region, endpoint_url)
    except ValueError as exc:
        raise QuotaError("ses.error", str(exc)) from None
    try:
        await _check_endpoint(net, url)
    except HostUnresolvable as exc:
        raise QuotaError("ses.host_unresolvable", str(exc)) from None
    except EgressError as exc:
        raise QuotaError("ses.host_not_allowed", str(exc)) from None
    config = AioConfig(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        connector_args={"resolver": _policy_resolver(net)},
    )
    try:
        async with asyncio.timeout(timeout * 2):
            async with get_session().create_client(
                "ses",
                region_name=credentials.region,
                endpoint_url=url,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key.reveal(),
                verify=ca_file or True,
                config=config,
            ) as client:
                answer: dict[str, Any] = await client.get_send_quota()
    except ClientError as exc:
        raise _from_client_error(exc) from None
    except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise QuotaError(
            "ses.unreachable", f"SES at {urlsplit(url).hostname} did not answer ({type(exc).__name__})"
        ) from None
    return SendQuota(
        max_24_hour_send=float(answer.get("Max24HourSend", 0.0)),
        sent_last_24_hours=float(answer.get("SentLast24Hours", 0.0)),
        max_send_rate=float(answer.get("MaxSendRate", 0.0)),
    )


def _from_client_error(exc: ClientError) -> QuotaError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "unknown"))[:60]
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _AUTH_CODES:
        return QuotaError("ses.auth_failed", f"SES refused the API key ({code}): check the access key id and secret")
    if code in _DENIED_CODES:
        return QuotaError("ses.access_denied", f"the API key may not call ses:GetSendQuota ({code})")
    if code in _THROTTLED_CODES:
        return QuotaError("ses.throttled", f"SES throttled the quota read ({code}); the next refresh tries again")
    return QuotaError("ses.error", f"SES answered {code} (HTTP {status})")
