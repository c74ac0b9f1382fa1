"""Every stable code a verification can fail with, in check order (documented in OpenAPI and README)."""

from __future__ import annotations

DNS_CODES = (
    "dns.mx_missing",
    "dns.spf_missing",
    "dns.spf_invalid",
    "dns.dkim_missing",
    "dns.dkim_invalid",
    "dns.dmarc_missing",
    "dns.dmarc_invalid",
    "dns.timeout",
)
SMTP_CODES = (
    "smtp.host_unresolvable",
    "smtp.host_not_allowed",
    "smtp.connection_refused",
    "smtp.timeout",
    "smtp.tls_handshake_failed",
    "smtp.tls_certificate_invalid",
    "smtp.starttls_required",
    "smtp.starttls_unsupported",
    "smtp.plaintext_auth_refused",
    "smtp.auth_failed",
    "smtp.auth_unsupported",
    "smtp.sender_rejected",
    "smtp.recipient_rejected",
    "smtp.relay_denied",
    "smtp.throttled",
    "smtp.rejected",
)
IMAP_CODES = (
    "imap.host_unresolvable",
    "imap.host_not_allowed",
    "imap.connection_refused",
    "imap.timeout",
    "imap.tls_handshake_failed",
    "imap.tls_certificate_invalid",
    "imap.starttls_unsupported",
    "imap.plaintext_auth_refused",
    "imap.auth_failed",
    "imap.folder_not_found",
    "imap.protocol_error",
)
ROUNDTRIP_CODES = ("roundtrip.not_found", "roundtrip.timeout")
ALL_CODES = DNS_CODES + SMTP_CODES + IMAP_CODES + ROUNDTRIP_CODES
