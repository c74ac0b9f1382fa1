"""What a send attempt's result means for the message, the recipient and the inbox: a data table.

Rows are matched in order; the first row whose error code, stage and enhanced-code prefix all match
decides. ``*`` matches anything.

    code                         stage  enhanced  outcome
    smtp.timeout                 dot    *         unknown      (the message may have been taken: never resent blindly)
    smtp.connection_lost         dot    *         unknown
    smtp.auth_failed             *      *         credential   (530/534/535: the inbox's login is wrong)
    smtp.auth_unsupported        *      *         credential
    smtp.starttls_required       *      *         credential
    smtp.starttls_unsupported    *      *         credential
    smtp.plaintext_auth_refused  *      *         credential
    smtp.tls_certificate_invalid *      *         credential   (TLS verification failed: not the recipient's fault)
    smtp.tls_handshake_failed    *      *         transient
    smtp.sender_rejected         *      *         credential   (the server will not send as this address)
    smtp.smtputf8_unsupported    mail   *         credential   (the inbox's own address needs SMTPUTF8)
    smtp.smtputf8_unsupported    *      *         failed       (this recipient's address needs SMTPUTF8)
    smtp.relay_denied            *      *         relay_denied (about this recipient, or the login: see below)
    smtp.host_not_allowed        *      *         credential   (the operator's egress policy refuses the host)
    smtp.host_unresolvable       *      *         transient
    smtp.connection_refused      *      *         transient
    smtp.timeout                 *      *         transient    (before the final dot nothing was accepted)
    smtp.throttled               *      *         transient    (4xx: try later)
    smtp.recipient_rejected      rcpt   5.1.      hard_bounce  (the address does not exist: suppress it)
    smtp.recipient_rejected      *      *         failed
    smtp.rejected                data   5.1.      hard_bounce
    smtp.rejected                *      *         failed       (5xx on DATA or after the dot)

A code the table does not know is transient before the final dot and failed after it.

``credential`` pauses the inbox with the code as the reason and hands its queued messages back for other
inboxes, without blaming the recipient. ``transient`` defers on the backoff schedule up to the maximum
lifetime, then ``expired``.

``relay_denied`` is decided by what else the connection saw (``sending.relay``): a relay refusal of one
recipient while others are accepted is about that recipient (``failed``, that message only); only refusals
of every recipient a run tried, across several domains, or of the inbox's own address, pause the inbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Outcome = Literal["sent", "unknown", "credential", "transient", "hard_bounce", "failed", "relay_denied"]


@dataclass(frozen=True)
class Row:
    code: str
    stage: str
    enhanced: str
    outcome: Outcome


TABLE: tuple[Row, ...] = (
    Row("smtp.timeout", "dot", "*", "unknown"),
    Row("smtp.connection_lost", "dot", "*", "unknown"),
    Row("smtp.auth_failed", "*", "*", "credential"),
    Row("smtp.auth_unsupported", "*", "*", "credential"),
    Row("smtp.starttls_required", "*", "*", "credential"),
    Row("smtp.starttls_unsupported", "*", "*", "credential"),
    Row("smtp.plaintext_auth_refused", "*", "*", "credential"),
    Row("smtp.tls_certificate_invalid", "*", "*", "credential"),
    Row("smtp.tls_handshake_failed", "*", "*", "transient"),
    Row("smtp.sender_rejected", "*", "*", "credential"),
    Row("smtp.smtputf8_unsupported", "mail", "*", "credential"),
    Row("smtp.smtputf8_unsupported", "*", "*", "failed"),
    Row("smtp.relay_denied", "*", "*", "relay_denied"),
    Row("smtp.host_not_allowed", "*", "*", "credential"),
    Row("smtp.host_unresolvable", "*", "*", "transient"),
    Row("smtp.connection_refused", "*", "*", "transient"),
    Row("smtp.timeout", "*", "*", "transient"),
    Row("smtp.throttled", "*", "*", "transient"),
    Row("smtp.recipient_rejected", "rcpt", "5.1.", "hard_bounce"),
    Row("smtp.recipient_rejected", "*", "*", "failed"),
    Row("smtp.rejected", "data", "5.1.", "hard_bounce"),
    Row("smtp.rejected", "*", "*", "failed"),
)


def classify(code: str, stage: str, enhanced: str | None) -> Outcome:
    for row in TABLE:
        if row.code != code:
            continue
        if row.stage not in ("*", stage):
            continue
        if row.enhanced != "*" and not (enhanced or "").startswith(row.enhanced):
            continue
        return row.outcome
    return "transient" if code.startswith("smtp.") and stage != "dot" else "failed"


RETRY_SCHEDULE: tuple[timedelta, ...] = tuple(timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480))
"""Delay before attempt n+1 after n transient failures (the last one repeats)."""

MAX_LIFETIME = timedelta(hours=24)
"""A message still undelivered this long after it was queued expires instead of being retried."""


def next_attempt(attempts: int, now: datetime, queued_at: datetime) -> datetime | None:
    """When to retry after ``attempts`` transient failures, or None when the message should expire."""
    delay = RETRY_SCHEDULE[min(max(attempts, 1), len(RETRY_SCHEDULE)) - 1]
    retry_at = now + delay
    return None if retry_at - queued_at > MAX_LIFETIME else retry_at
