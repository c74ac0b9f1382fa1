"""Whether a webhook URL may receive deliveries: the egress policy SMTP and IMAP follow, for HTTP.

Checked at create and update, and again at every delivery: ``check_static`` before each request, and
``allowed_addresses`` inside the connection itself (``webhooks.transport``), so the addresses judged are
the addresses connected to and a name that resolves elsewhere later (DNS rebinding) is refused then.
The rules, in order:

* scheme ``https`` (``http`` only with ``NIMBUS_WEBHOOK_ALLOW_HTTP``), no user:password in the URL;
* a host name or an IP literal. Every spelling of an IPv4 address that an HTTP client or ``inet_aton``
  would read as one (``0x7f000001``, ``2130706433``, ``0177.0.0.1``, ``127.1``) is read as that address
  and judged as such; ``localhost`` and names under ``.localhost`` are refused unless allowlisted;
* port 443 or 80, or one the operator listed in ``NIMBUS_EGRESS_ALLOW`` (``:8443``);
* resolved with our resolver, **every** address must pass the policy: a name with one private address
  among public ones is refused, since a later delivery could be sent to it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.asyncresolver

from nimbus_api.kit.egress import EgressPolicy, HostUnresolvable, IPAddress, resolve_addresses
from nimbus_api.webhooks.errors import WebhookUrlRefused

_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    host: str
    port: int


def _ipv4_spelling(host: str) -> IPAddress | None:
    """The address a host whose last label is numeric stands for (WHATWG URL host parsing)."""
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.match(last):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except OSError:
        raise WebhookUrlRefused("host", f"{host!r} is neither a host name nor an IPv4 address") from None


def parse(url: str, *, allow_http: bool) -> tuple[CheckedUrl, IPAddress | None]:
    """Syntax and scheme rules; returns the URL's parts and its literal address, if it is one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlRefused("host", "the URL's host or port cannot be read") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        allowed = "https or http" if allow_http else "https (operator: NIMBUS_WEBHOOK_ALLOW_HTTP allows http)"
        raise WebhookUrlRefused("scheme", f"the URL's scheme must be {allowed}")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("credentials", "the URL must not carry a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookUrlRefused("host", "the URL has no host")
    if "%" in host:
        raise WebhookUrlRefused("host", "a zoned IPv6 address is not a webhook host")
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = _ipv4_spelling(host)
        if literal is None:
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise WebhookUrlRefused("host", "the URL's host is not a valid host name") from None
    checked = CheckedUrl(url=url, host=host, port=port or (443 if scheme == "https" else 80))
    return checked, literal


def check_static(url: str, *, policy: EgressPolicy, allow_http: bool) -> tuple[CheckedUrl, IPAddress | None]:
    """Every rule that needs no DNS: scheme, credentials, host spelling, port, loopback names, and the
    address itself when the host is an IP literal (in any spelling)."""
    checked, literal = parse(url, allow_http=allow_http)
    if not policy.web_port_allowed(checked.port):
        raise WebhookUrlRefused(
            "port", f"port {checked.port} is not allowed: 443 or 80 (operator: NIMBUS_EGRESS_ALLOW `:PORT`)"
        )
    host = checked.host
    if literal is None and (host == "localhost" or host.endswith(".localhost")) and not policy.host_allowed(host):
        raise WebhookUrlRefused("address", f"{host} is a loopback name")
    if literal is not None and not policy.address_allowed(literal, None):
        raise WebhookUrlRefused("address", f"{host} is an address deliveries may not reach")
    return checked, literal


async def allowed_addresses(policy: EgressPolicy, resolver: dns.asyncresolver.Resolver, host: str) -> list[IPAddress]:
    """The addresses of ``host``, if **every** one passes the policy (a literal stands for itself)."""
    try:
        addresses = await resolve_addresses(resolver, host)
    except HostUnresolvable:
        raise WebhookUrlRefused("unresolvable", f"{host} does not resolve") from None
    literal = len(addresses) == 1 and str(addresses[0]) == host.strip("[]")
    if not all(policy.address_allowed(a, None if literal else host) for a in addresses):
        raise WebhookUrlRefused("address", f"{host} is, or resolves to, an address deliveries may not reach")
    return addresses


async def check_url(
    url: str, *, policy: EgressPolicy, resolver: dns.asyncresolver.Resolver, allow_http: bool
) -> CheckedUrl:
    """Raise ``WebhookUrlRefused`` unless deliveries may be sent to ``url``."""
    checked, literal = check_static(url, policy=policy, allow_http=allow_http)
    if literal is None:
        await allowed_addresses(policy, resolver, checked.host)
    return checked
