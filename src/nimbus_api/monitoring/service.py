"""Assembling the monitoring read from its queries (``queries``).

DNS by record: the domain's re-checks (``domain_checks``, one row per record with its time, ``source:
domain_check``) once the domain has been checked; before that, the inbox's last connect-time verification
(its ``dns`` check's per-record results, ``source: verification``). The blocklist listings are the
per-list answers of the latest ``blocklists`` check. Score components: ``email_accounts.health_components``
(the last health recompute).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.alerts import history
from nimbus_api.domains.health import RECORDS
from nimbus_api.kit.db import utcnow
from nimbus_api.models import DomainCheck, EmailAccount, MailboxSync
from nimbus_api.monitoring import figures, queries
from nimbus_api.monitoring.schemas import (
    BlocklistSection,
    ConnectionWindow,
    DnsRecord,
    DnsSection,
    Monitoring,
    RecordStatus,
    ScoreSection,
    SendWindow,
    SyncSection,
    WindowName,
)

WINDOWS: tuple[WindowName, ...] = ("24h", "7d")
RECORD_ORDER = {name: i for i, name in enumerate(RECORDS)}
_STATUS: dict[str, RecordStatus] = {"passed": "pass", "pass": "pass", "failed": "fail", "fail": "fail", "warn": "warn"}


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _said(detail: dict[str, Any]) -> str | None:
    text = detail.get("detail")
    return text[:500] if isinstance(text, str) else None


def dns_records(account: EmailAccount, checks: list[DomainCheck]) -> list[DnsRecord]:
    if checks:
        return [
            DnsRecord(
                record=c.record,
                status=_STATUS.get(c.status, "unknown"),
                code=c.code,
                detail=_said(c.detail or {}),
                checked_at=c.checked_at,
                source="domain_check",
            )
            for c in sorted(checks, key=lambda c: RECORD_ORDER.get(c.record, len(RECORD_ORDER)))
            if c.record != "blocklists"
        ]
    verification = account.last_verification or {}
    dns = next((c for c in verification.get("checks", []) if isinstance(c, dict) and c.get("name") == "dns"), None)
    if dns is None:
        return []
    checked_at = _timestamp(verification.get("verified_at")) or account.last_verified_at
    return [
        DnsRecord(
            record=name,
            status=_STATUS.get(str(part.get("status")), "unknown"),
            code=part.get("code"),
            detail=part.get("detail"),
            checked_at=checked_at,
            source="verification",
        )
        for name, part in (dns.get("data") or {}).items()
        if isinstance(part, dict) and "status" in part
    ]


def _sync(account: EmailAccount, sync: MailboxSync | None, now: datetime) -> SyncSection:
    if sync is None:
        return SyncSection(
            configured=account.imap_host is not None,
            status=None,
            last_success_at=None,
            last_poll_at=None,
            next_poll_at=None,
            lag_seconds=None,
            consecutive_failures=0,
            last_error_code=None,
            failing_since=None,
        )
    return SyncSection(
        configured=True,
        status=sync.status,
        last_success_at=sync.last_success_at,
        last_poll_at=sync.last_poll_at,
        next_poll_at=sync.next_poll_at,
        lag_seconds=round((now - (sync.last_success_at or sync.created_at)).total_seconds(), 3),
        consecutive_failures=sync.consecutive_failures,
        last_error_code=sync.last_error_code,
        failing_since=sync.failing_since,
    )


async def monitoring(session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID) -> Monitoring:
    account, domain, sync = await queries.load(session, workspace_id, account_id)
    now = utcnow()
    bounds = figures.Bounds.at(now)
    since: dict[WindowName, datetime] = {"24h": bounds.since_24h, "7d": bounds.since_7d}
    counts = await figures.send_counts(session, account.id, bounds)
    alerts = await queries.active_alerts(session, workspace_id, account.id, domain.id)
    checks = await queries.domain_checks(session, domain.id)
    listed = next((c for c in checks if c.record == "blocklists"), None)
    results = (listed.detail or {}).get("results") if listed is not None else None
    sends, connections = [], []
    for name in WINDOWS:
        c = counts[name]
        attempts = c.accepted + sum(c.not_accepted.values())
        failures = sum(c.connection_failures.values())
        sends.append(
            SendWindow(
                window=name,
                since=since[name],
                attempts=attempts,
                accepted=c.accepted,
                not_accepted=c.not_accepted,
                success_rate=_percent(c.accepted, attempts),
            )
        )
        connections.append(
            ConnectionWindow(
                window=name,
                since=since[name],
                attempts=attempts,
                failures=failures,
                failures_by_code=c.connection_failures,
                success_rate=_percent(attempts - failures, attempts),
            )
        )
    components = account.health_components
    return Monitoring(
        account_id=account.id,
        email=account.email,
        generated_at=now,
        score=ScoreSection(
            overall_score=account.overall_score,
            reputation_score=account.reputation_score,
            current_stage=account.current_stage,
            warmup_progress=account.warmup_progress,
            bounce_rate_7d=account.bounce_rate_7d,
            complaint_rate_7d=account.complaint_rate_7d,
            cooldown_until=account.cooldown_until,
            components=components if isinstance(components, dict) else None,
        ),
        sends=sends,
        smtp_connections=connections,
        sync=_sync(account, sync, now),
        dns=DnsSection(
            domain_id=domain.id,
            domain=domain.name,
            status=domain.dns_status,
            checked_at=domain.health_checked_at,
            is_paused=domain.is_paused,
            paused_reason=domain.paused_reason,
            records=dns_records(account, checks),
        ),
        blocklist=BlocklistSection(
            status=domain.blocklist_status,
            checked_at=domain.health_checked_at,
            listings=[r for r in results if isinstance(r, dict)] if isinstance(results, list) else None,
        ),
        active_alerts=history.reads(alerts),
    )
