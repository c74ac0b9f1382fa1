"""Which of our stable codes a server reply means: a data table, first matching row wins.

Why a table: the same reply means different things at different steps (``554 5.7.1`` to RCPT is a
relay refusal, after the message's final dot it is a content refusal), servers disagree on enhanced
codes, and the rules will keep growing as we meet new servers. A table keeps every rule visible in
one place, reviewable as data, and each row has its own test (tests/smtp/test_classify.py).

Columns:

* ``stage``: the step the reply answered (``connect`` greeting, ``tls`` STARTTLS, ``ehlo``, ``auth``,
  ``mail``, ``rcpt``, ``data`` the DATA command, ``dot`` the reply to the message's final dot), or ``*``.
* ``basic``: the basic reply code, ``x`` is any digit (``5xx``), ``*`` is any code.
* ``enhanced``: a glob on the RFC 3463 enhanced code (``5.7.*``); ``*`` also matches replies without one.
* ``link``: ``cleartext`` or ``tls``, whether the connection was encrypted when the reply came; ``*`` both.
* ``text``: a regular expression searched in the reply text (case-insensitive); empty matches any.

The table (rendered from ``TABLE`` by ``render_table``; a test keeps the two identical):

    stage  basic  enhanced  link       text                                                  code
    -----  -----  --------  ---------  ----------------------------------------------------  -------------------------
    *      530    *         cleartext  starttls|tls|ssl|encrypt                              smtp.starttls_required
    *      538    *         cleartext                                                        smtp.starttls_required
    *      530    *         *                                                                smtp.auth_failed
    tls    454    *         *                                                                smtp.tls_handshake_failed
    tls    5xx    *         *                                                                smtp.starttls_unsupported
    auth   50x    *         *                                                                smtp.auth_unsupported
    auth   5xx    *         *                                                                smtp.auth_failed
    mail   5xx    *         *                                                                smtp.sender_rejected
    rcpt   5xx    *         *          relay                                                 smtp.relay_denied
    rcpt   5xx    *         *          recipient address rejected|user unknown|no such user  smtp.recipient_rejected
    rcpt   5xx    5.7.1     *                                                                smtp.relay_denied
    rcpt   5xx    *         *                                                                smtp.recipient_rejected
    *      4xx    *         *                                                                smtp.throttled
    *      5xx    *         *                                                                smtp.rejected
    *      *      *         *                                                                smtp.rejected

Notes on the rows, top to bottom: 530 is both RFC 3207's "Must issue a STARTTLS command first" and
RFC 4954's "Authentication required" (Gmail and Postfix send ``5.7.0`` for both), so the text and
whether we are encrypted decide; 538 ``5.7.11`` is "encryption required for this mechanism"; 454 to
STARTTLS is "TLS not available now", a 5xx to it means the command is not really supported; 500/502/504
to AUTH mean the mechanism or command is unknown, any other 5xx (535 ``5.7.8``, Gmail's 534 ``5.7.9``
"application-specific password required", Microsoft's 535 ``5.7.139``) is a refused login; ``5.7.1``
or the word "relay" at RCPT is a relay refusal ("554 5.7.1 Relay access denied"), unless the text names
the recipient as the problem (Postfix's "550 5.7.1 <x>: Recipient address rejected: Access denied" is a
policy refusal of that one address, not of the login: the word "relay" still wins when both appear); any 4xx is a
temporary refusal (rate limits, greylisting, 421 closing); the last row takes replies no step expects
(a 250 to DATA, a malformed line).

Refusals that are not replies (DNS, egress policy, TCP, TLS handshake, timeouts) never reach this table;
``client.py`` maps them directly. ``HINTS`` and ``auth_failed_hint`` say what a person can change.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Literal, NamedTuple

from nimbus_api.smtp.errors import Stage

Link = Literal["*", "cleartext", "tls"]


class Row(NamedTuple):
    stage: Stage | Literal["*"]
    basic: str
    enhanced: str
    link: Link
    text: str
    code: str


_ABOUT_RECIPIENT = r"recipient address rejected|user unknown|no such user"
"""Reply texts that name the recipient as the problem: Postfix's ``check_recipient_access`` and
``smtpd_recipient_restrictions`` say ``550 5.7.1 <x>: Recipient address rejected: ...`` with the same
enhanced code as a relay refusal, and only the text tells them apart."""

TABLE: tuple[Row, ...] = (
    Row("*", "530", "*", "cleartext", r"starttls|tls|ssl|encrypt", "smtp.starttls_required"),
    Row("*", "538", "*", "cleartext", "", "smtp.starttls_required"),
    Row("*", "530", "*", "*", "", "smtp.auth_failed"),
    Row("tls", "454", "*", "*", "", "smtp.tls_handshake_failed"),
    Row("tls", "5xx", "*", "*", "", "smtp.starttls_unsupported"),
    Row("auth", "50x", "*", "*", "", "smtp.auth_unsupported"),
    Row("auth", "5xx", "*", "*", "", "smtp.auth_failed"),
    Row("mail", "5xx", "*", "*", "", "smtp.sender_rejected"),
    Row("rcpt", "5xx", "*", "*", r"relay", "smtp.relay_denied"),
    Row("rcpt", "5xx", "*", "*", _ABOUT_RECIPIENT, "smtp.recipient_rejected"),
    Row("rcpt", "5xx", "5.7.1", "*", "", "smtp.relay_denied"),
    Row("rcpt", "5xx", "*", "*", "", "smtp.recipient_rejected"),
    Row("*", "4xx", "*", "*", "", "smtp.throttled"),
    Row("*", "5xx", "*", "*", "", "smtp.rejected"),
    Row("*", "*", "*", "*", "", "smtp.rejected"),
)


def _basic_matches(pattern: str, code: int) -> bool:
    if pattern == "*":
        return True
    digits = str(code)
    return len(digits) == len(pattern) and all(p in ("x", d) for p, d in zip(pattern, digits, strict=True))


def row_matches(row: Row, stage: Stage, code: int, enhanced: str | None, text: str, *, encrypted: bool) -> bool:
    if row.stage not in ("*", stage):
        return False
    if not _basic_matches(row.basic, code):
        return False
    if row.enhanced != "*" and (enhanced is None or not fnmatchcase(enhanced, row.enhanced)):
        return False
    if row.link != "*" and row.link != ("tls" if encrypted else "cleartext"):
        return False
    return not row.text or re.search(row.text, text, re.IGNORECASE) is not None


def match(stage: Stage, code: int, enhanced: str | None, text: str, *, encrypted: bool) -> Row:
    """The first row of ``TABLE`` matching this reply (the last row matches everything)."""
    for row in TABLE:
        if row_matches(row, stage, code, enhanced, text, encrypted=encrypted):
            return row
    raise AssertionError("TABLE must end with a catch-all row")  # pragma: no cover


def classify(stage: Stage, code: int, enhanced: str | None, text: str, *, encrypted: bool) -> str:
    """Our stable error code for a reply the server gave at ``stage``."""
    return match(stage, code, enhanced, text, encrypted=encrypted).code


def render_table() -> str:
    """``TABLE`` as the aligned text the module docstring shows."""
    header = ("stage", "basic", "enhanced", "link", "text", "code")
    rows = [header] + [(r.stage, r.basic, r.enhanced, r.link, r.text, r.code) for r in TABLE]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- What a person can change -----------------------------------------------------------------------

_GOOGLE = re.compile(r"(^|\.)(gmail\.com|googlemail\.com|google\.com)$")
_MICROSOFT = re.compile(r"(^|\.)(office365\.com|outlook\.com|hotmail\.com|live\.com|microsoft\.com)$")

GOOGLE_AUTH_HINT = (
    "Google refuses the normal account password for SMTP: turn on 2-Step Verification and create an app "
    "password (https://myaccount.google.com/apppasswords), then use it with the full email address as username."
)
MICROSOFT_AUTH_HINT = (
    "Microsoft 365 / Outlook: SMTP AUTH must be enabled for this mailbox (Authenticated SMTP in the admin "
    "centre; security defaults turn it off), the username is the full email address, and with MFA on the "
    "password must be an app password."
)
GENERIC_AUTH_HINT = (
    "Check the username (often the full email address) and the password. Providers with two-factor login "
    "usually need an app password for SMTP instead of the account password."
)

HINTS: dict[str, str] = {
    "smtp.host_unresolvable": "Check the SMTP host name for typos; it has no address in DNS.",
    "smtp.host_not_allowed": (
        "Connections to private, internal or reserved addresses and to unusual ports are refused. An operator "
        "can allow a host, network or port with NIMBUS_EGRESS_ALLOW."
    ),
    "smtp.connection_refused": (
        "Nothing accepted the connection: check the host and the port (587 for STARTTLS, 465 for SSL)."
    ),
    "smtp.timeout": (
        "The server did not answer in time: check the port, and that no firewall drops the traffic "
        "(many networks block port 25)."
    ),
    "smtp.tls_handshake_failed": "TLS could not be negotiated with the server.",
    "smtp.tls_certificate_invalid": (
        "Use the host name the server's certificate was issued for (the provider's documented SMTP host). "
        "For a private CA, an operator can trust it with NIMBUS_EXTRA_CA_FILE."
    ),
    "smtp.starttls_required": "The server requires encryption: use mode starttls (or ssl on port 465).",
    "smtp.starttls_unsupported": (
        "The server does not offer STARTTLS on this port. Port 465 needs mode ssl; a server that cannot "
        "encrypt at all can only be used with mode none, on a network you trust."
    ),
    "smtp.plaintext_auth_refused": (
        "We do not send a password over an unencrypted connection: use mode starttls or ssl. Only for a "
        "relay on a network you trust, set allow_plaintext_auth."
    ),
    "smtp.auth_failed": GENERIC_AUTH_HINT,
    "smtp.auth_unsupported": (
        "The server offers no login method we support (PLAIN, LOGIN). If it relays without a login, remove "
        "the username and password."
    ),
    "smtp.sender_rejected": (
        "The server refused the account's address as sender: the login may not be allowed to send as this "
        "address (check 'send as' permissions, or use the address the login belongs to)."
    ),
    "smtp.recipient_rejected": "The server refused the account's own address as recipient: check the address.",
    "smtp.smtputf8_unsupported": (
        "The address has characters outside ASCII before the @, which only servers offering SMTPUTF8 "
        "(RFC 6531) can carry, and this server does not: send to this contact through another provider."
    ),
    "smtp.relay_denied": (
        "The server does not relay for this connection: it usually needs a login (username and password), and "
        "the sender address must belong to that login."
    ),
    "smtp.throttled": (
        "The server asked to try again later (rate limit, greylisting or a temporary problem): retry in a few minutes."
    ),
    "smtp.rejected": "The server refused; its reply says why.",
}


TENANT_SMTP_AUTH_DISABLED_HINT = (
    "SMTP AUTH is disabled for the tenant: an admin enables Authenticated SMTP for the mailbox "
    "(Microsoft 365 admin center, Mail > Manage email apps)"
)
_TENANT_SMTP_AUTH_DISABLED = re.compile(r"(?i)SmtpClientAuthentication is disabled")


def reply_hint(text: str) -> str | None:
    """A hint read from the reply itself (provider-specific wording), or None."""
    if _TENANT_SMTP_AUTH_DISABLED.search(text):
        return TENANT_SMTP_AUTH_DISABLED_HINT
    return None


def auth_failed_hint(host: str) -> str:
    """The login advice for ``host``: Google and Microsoft need app passwords / SMTP AUTH enabled."""
    name = host.lower().rstrip(".")
    if _GOOGLE.search(name):
        return GOOGLE_AUTH_HINT
    if _MICROSOFT.search(name):
        return MICROSOFT_AUTH_HINT
    return GENERIC_AUTH_HINT


__all__ = [
    "HINTS",
    "TABLE",
    "TENANT_SMTP_AUTH_DISABLED_HINT",
    "Link",
    "Row",
    "auth_failed_hint",
    "classify",
    "match",
    "render_table",
    "reply_hint",
    "row_matches",
]
