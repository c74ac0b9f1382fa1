"""The monitoring read's queries: the inbox with its domain and sync row (one join), the send figures of
both windows (one statement over two indexes), the active alerts on the inbox or its domain."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.errors import AccountNotFound
from nimbus_api.models import AlertState, Domain, EmailAccount, MailboxSync

CONNECTION_CODES = frozenset(
    {
        "smtp.connection_refused",
        "smtp.host_unresolvable",
        "smtp.host_not_allowed",
        "smtp.tls_handshake_failed",
        "smtp.tls_certificate_invalid",
        "smtp.starttls_required",
        "smtp.starttls_unsupported",
        "smtp.auth_failed",
        "smtp.auth_unsupported",
        "smtp.plaintext_auth_refused",
        "smtp.timeout",
        "smtp.connection_lost",
    }
)
"""Failures of the session itself (connect, TLS, login, or the connection breaking), as opposed to the
server refusing one message or recipient. A timeout or a lost connection after the final dot (outcome
``unknown``: the message may have been taken) is not counted as one."""

# Both windows in one pass over each index: the 7-day range, with the last 24 h as a filter.
_SEND_FIGURES = text(
    """
    SELECT 'accepted' AS outcome, NULL AS error_code,
           count(*) FILTER (WHERE sent_at >= :since_24h) AS day, count(*) AS week
    FROM messages
    WHERE account_id = :account_id AND sent_at >= :since_7d
    UNION ALL
    SELECT outcome, error_code, count(*) FILTER (WHERE started_at >= :since_24h), count(*)
    FROM send_attempts
    WHERE account_id = :account_id AND started_at >= :since_7d
    GROUP BY outcome, error_code
    """
)


@dataclass
class Counts:
    accepted: int = 0
    not_accepted: dict[str, int] = field(default_factory=dict)
    connection_failures: dict[str, int] = field(default_factory=dict)


async def load(
    session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[EmailAccount, Domain, MailboxSync | None]:
    row = (
        await session.execute(
            select(EmailAccount, Domain, MailboxSync)
            .join(Domain, Domain.id == EmailAccount.domain_id)
            .outerjoin(MailboxSync, MailboxSync.account_id == EmailAccount.id)
            .where(EmailAccount.id == account_id, EmailAccount.workspace_id == workspace_id)
        )
    ).first()
    if row is None:
        raise AccountNotFound()
    return row[0], row[1], row[2]


async def send_counts(
    session: AsyncSession, account_id: uuid.UUID, since_24h: datetime, since_7d: datetime
) -> dict[str, Counts]:
    """Per window (``24h``, ``7d``): accepted messages, other attempts by outcome, connection failures."""
    rows = await session.execute(
        _SEND_FIGURES, {"account_id": account_id, "since_24h": since_24h, "since_7d": since_7d}
    )
    out = {"24h": Counts(), "7d": Counts()}
    for outcome, error_code, day, week in rows.all():
        for name, n in (("24h", day), ("7d", week)):
            counts = out[name]
            if outcome == "accepted":
                counts.accepted = n
                continue
            if not n:
                continue
            counts.not_accepted[outcome] = counts.not_accepted.get(outcome, 0) + n
            if error_code in CONNECTION_CODES and outcome != "unknown":
                counts.connection_failures[error_code] = counts.connection_failures.get(error_code, 0) + n
    return out


async def active_alerts(
    session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID, domain_id: uuid.UUID
) -> list[AlertState]:
    return list(
        await session.scalars(
            select(AlertState)
            .where(
                AlertState.workspace_id == workspace_id,
                AlertState.active,
                or_(AlertState.subject_id == account_id, AlertState.subject_id == domain_id),
            )
            .order_by(AlertState.id.desc())
        )
    )
