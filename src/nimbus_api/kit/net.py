"""What every adapter needs to reach a user-supplied host: policy, resolver, TLS context, timeouts.

Built once per process (``build_net_context``) and passed down to the SMTP, IMAP and DNS adapters,
which know nothing else of the settings. The TLS context is shared on purpose: building one costs tens
of milliseconds of CPU, and verification is on (host name and chain) with the system's CAs plus
``NIMBUS_EXTRA_CA_FILE``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver

from nimbus_api.config import Settings
from nimbus_api.kit.egress import EgressPolicy, make_resolver


@dataclass(frozen=True)
class NetContext:
    policy: EgressPolicy
    resolver: dns.asyncresolver.Resolver
    tls: ssl.SSLContext
    connect_timeout: float
    command_timeout: float


def make_tls_context(extra_ca_file: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if extra_ca_file is not None:
        context.load_verify_locations(cafile=str(extra_ca_file))
    return context


def build_net_context(settings: Settings) -> NetContext:
    return NetContext(
        policy=EgressPolicy.from_entries(settings.egress_allow),
        resolver=make_resolver(settings.dns_nameservers, settings.dns_timeout_seconds),
        tls=make_tls_context(settings.extra_ca_file),
        connect_timeout=settings.connect_timeout_seconds,
        command_timeout=settings.command_timeout_seconds,
    )
