"""What a domain check's findings do to the rows: store each record's result, pause or resume the domain.

The domain's health state machine, written down:

    healthy --(a check finds a domain-wide problem)--> paused (is_paused, paused_reason = first problem)
    paused  --(a check finds the problems gone)------> healthy (is_paused false, paused_reason None)

``domain.unhealthy`` fires on the first arrow and ``domain.healthy`` on the second, once each: the
domain row is locked (``SELECT ... FOR UPDATE``, re-read after the lock) before the state is compared
and changed, so two checks finishing together see each other's outcome and only the first moves it.
A paused domain whose problems change stays paused (its reason follows the first problem) without a
new event. A record whose new result is ``unknown`` keeps its previous failure as a problem: a DNS
timeout neither pauses nor resumes. A domain paused for a reason that is not a health code (set by
something else) is left alone: health checks do not resume what they did not pause.

Pausing is one flag on the domain: rotation (``sending.rotation``) already skips every inbox whose
domain is paused, so all inboxes of the domain stop and start together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.domains.health import RECORDS, HealthFindings, RecordResult
from nimbus_api.events.catalogue import DomainHealthData
from nimbus_api.health import requests as health_requests
from nimbus_api.models import Domain, DomainCheck, EmailAccount

HEALTH_REASON_PREFIXES = ("dns.", "dmarc.", "blocklist.")


def is_health_reason(reason: str | None) -> bool:
    return reason is not None and reason.startswith(HEALTH_REASON_PREFIXES)


@dataclass(frozen=True)
class Transition:
    problems: list[str]
    became: str | None  # "unhealthy" | "healthy" | None (no change)


def _first_detail(findings: HealthFindings, code: str) -> str | None:
    for name in RECORDS:
        record = findings.records.get(name)
        if record is not None and record.code == code:
            detail: Any = record.detail.get("detail")
            return str(detail)[:500] if detail else None
    return None


def store_record(
    session: AsyncSession,
    row: DomainCheck | None,
    domain_id: uuid.UUID,
    name: str,
    result: RecordResult,
    now: datetime,
) -> None:
    """Write one record's latest result on its row (created on first use), noting when the status changed."""
    if row is None:
        session.add(
            DomainCheck(
                domain_id=domain_id,
                record=name,
                status=result.status,
                code=result.code,
                detail=result.detail,
                checked_at=now,
                changed_at=now,
            )
        )
        return
    if row.status != result.status:
        row.previous_status, row.changed_at = row.status, now
    row.status, row.code, row.detail, row.checked_at = result.status, result.code, result.detail, now


async def apply_findings(
    session: AsyncSession, domain_id: uuid.UUID, findings: HealthFindings, *, now: datetime
) -> Transition:
    """Store the findings and move the pause state, under the domain's row lock (see the module docstring)."""
    domain = await session.scalar(
        select(Domain).where(Domain.id == domain_id).with_for_update().execution_options(populate_existing=True)
    )
    if domain is None:  # deleted meanwhile
        return Transition([], None)
    existing = {
        c.record: c
        for c in (await session.scalars(select(DomainCheck).where(DomainCheck.domain_id == domain_id))).all()
    }
    carried: list[str] = []
    for name in RECORDS:
        result = findings.records.get(name)
        if result is None:
            continue
        row = existing.get(name)
        if row is not None and result.status == "unknown" and row.status == "fail" and row.code:
            carried.append(row.code)
        store_record(session, row, domain_id, name, result, now)
    problems = list(dict.fromkeys([*findings.problems, *carried]))
    moved = (domain.dns_status, domain.blocklist_status) != (findings.dns_status, findings.blocklist_status)
    domain.dns_status = findings.dns_status
    domain.blocklist_status = findings.blocklist_status
    domain.health_checked_at = now
    became: str | None = None
    if problems and not domain.is_paused:
        domain.is_paused, domain.paused_reason, became = True, problems[0], "unhealthy"
    elif problems and is_health_reason(domain.paused_reason):
        domain.paused_reason = problems[0]
    elif not problems and domain.is_paused and is_health_reason(domain.paused_reason):
        domain.is_paused, domain.paused_reason, became = False, None, "healthy"
    await session.flush()
    if moved:  # both verdicts are components of every inbox's health score on the domain
        await health_requests.request_for_domain(session, domain_id)
    if became is not None:
        accounts = await session.scalar(select(func.count(EmailAccount.id)).where(EmailAccount.domain_id == domain_id))
        events.emit(
            session,
            domain.workspace_id,
            f"domain.{became}",
            DomainHealthData(
                domain_id=domain.id,
                domain=domain.name,
                failing_checks=problems[:10],
                paused=domain.is_paused,
                accounts=accounts or 0,
                detail=_first_detail(findings, problems[0]) if problems else None,
            ),
        )
    return Transition(problems, became)


__all__ = ["HEALTH_REASON_PREFIXES", "Transition", "apply_findings", "is_health_reason", "store_record"]
