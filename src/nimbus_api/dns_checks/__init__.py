"""DNS checks of a sending domain (MX, SPF, DKIM, DMARC), on the resolver the caller gives.

Adapters here know nothing of the ORM or the settings: ``run_dns_checks`` receives a
``dns.asyncresolver.Resolver`` (``kit.egress.make_resolver``) and returns a ``DnsReport``. The SPF,
DKIM and DMARC modules are pure parsers/evaluators; only ``checks`` talks to a resolver.
"""

from nimbus_api.dns_checks.checks import DEFAULT_DKIM_SELECTORS, DnsFinding, DnsReport, run_dns_checks

__all__ = ["DEFAULT_DKIM_SELECTORS", "DnsFinding", "DnsReport", "run_dns_checks"]
