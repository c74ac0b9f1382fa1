"""Re-checking sending domains: on demand (``POST /v1/domains/{id}/check``) and nightly (worker cron).

One check: read what the rows say (the domain, its inboxes' DKIM selectors and SMTP hosts, the captured
message), run the network part (``domains.health``, no lock held), then store and move the pause state
under the domain's row lock (``domains.pause``). The caller's transaction commits it (the request
dependency, or one transaction per domain in the nightly run, so a slow or failing domain never holds
back the others' results).

On-demand checks are rate-limited per domain and per workspace (Redis fixed windows): each check asks
every configured blocklist about every sending IP, and the public lists cut off resolvers that ask too
much. The nightly run asks each domain once, through the shared per-process answer cache.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.domains import service
from nimbus_api.domains.errors import DomainCheckRateLimited, DomainNotFound
from nimbus_api.domains.health import DomainInboxes, HealthChecker, run_health_check
from nimbus_api.domains.pause import Transition, apply_findings
from nimbus_api.domains.samples import refresh_from_sent
from nimbus_api.domains.schemas import DomainHealthRead
from nimbus_api.kit import ratelimit
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.models import Domain, DomainSample, EmailAccount

log = structlog.get_logger(__name__)

_CHECKERS: dict[int, tuple[NetContext, HealthChecker]] = {}


def checker_for(settings: Settings, net: NetContext) -> HealthChecker:
    """The process's checker for ``net`` (built once: its blocklist answer cache is the process's)."""
    entry = _CHECKERS.get(id(net))
    if entry is None or entry[0] is not net:
        entry = (net, HealthChecker.from_settings(settings, net))
        _CHECKERS[id(net)] = entry
    return entry[1]


async def ensure_allowed(redis: Redis, settings: Settings, workspace_id: uuid.UUID, domain_id: uuid.UUID) -> None:
    window = settings.domain_check_window_seconds
    for key, limit in (
        (f"domaincheck:{domain_id}", settings.domain_check_limit),
        (f"domaincheck:ws:{workspace_id}", settings.domain_check_limit_per_workspace),
    ):
        retry = await ratelimit.hit(redis, key, limit=limit, window=window)
        if retry is not None:
            raise DomainCheckRateLimited(f"at most {limit} checks per {window} s", retry_after=retry)


async def _inboxes(session: AsyncSession, domain_id: uuid.UUID) -> DomainInboxes:
    rows = (
        await session.execute(
            select(EmailAccount.dkim_selector, EmailAccount.smtp_host).where(EmailAccount.domain_id == domain_id)
        )
    ).all()
    return DomainInboxes(
        dkim_selectors=tuple(r.dkim_selector for r in rows), smtp_hosts=tuple(sorted({r.smtp_host for r in rows}))
    )


async def run_check(
    session: AsyncSession, checker: HealthChecker, domain: Domain, *, vault: Vault | None = None
) -> Transition:
    """Check ``domain`` and apply the findings in the session's transaction (flushes, never commits).

    With ``vault`` the newest signed message of an inbox's Sent folder first replaces the sample
    (``domains.samples.refresh_from_sent``)."""
    if vault is not None:
        await refresh_from_sent(session, vault, checker.net, domain.id)
    inboxes = await _inboxes(session, domain.id)
    sample = await session.scalar(select(DomainSample.raw).where(DomainSample.domain_id == domain.id))
    findings = await run_health_check(checker, domain.name, inboxes, sample)
    transition = await apply_findings(session, domain.id, findings, now=utcnow())
    if transition.became is not None:
        log.info(
            "domain_health_changed", domain_id=str(domain.id), became=transition.became, problems=transition.problems
        )
    return transition


async def check_domain(
    session: AsyncSession,
    checker: HealthChecker,
    workspace_id: uuid.UUID,
    domain_id: uuid.UUID,
    *,
    vault: Vault | None = None,
) -> DomainHealthRead:
    domain = await session.scalar(select(Domain).where(Domain.id == domain_id, Domain.workspace_id == workspace_id))
    if domain is None:
        raise DomainNotFound()
    await run_check(session, checker, domain, vault=vault)
    return await service.get_health(session, workspace_id, domain_id)


@dataclass(frozen=True)
class NightlyRun:
    checked: int
    unhealthy: int
    healthy: int
    failed: int


async def check_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    checker: HealthChecker,
    *,
    vault: Vault | None = None,
    concurrency: int = 4,
) -> NightlyRun:
    """Every domain that has an inbox, each in its own transaction, ``concurrency`` at a time."""
    async with sessionmaker() as session:
        ids = list(
            (
                await session.scalars(
                    select(Domain.id).where(select(EmailAccount.id).where(EmailAccount.domain_id == Domain.id).exists())
                )
            ).all()
        )
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[str | None] = []

    async def one(domain_id: uuid.UUID) -> None:
        async with gate, sessionmaker() as session:
            try:
                domain = await session.get(Domain, domain_id)
                if domain is None:
                    return
                transition = await run_check(session, checker, domain, vault=vault)
                await session.commit()
                outcomes.append(transition.became)
            except Exception:  # one domain's failure must not end the run; it is logged and retried tomorrow
                await session.rollback()
                log.exception("domain_check_failed", domain_id=str(domain_id))
                outcomes.append("failed")

    await asyncio.gather(*(one(d) for d in ids))
    return NightlyRun(
        checked=len(outcomes),
        unhealthy=outcomes.count("unhealthy"),
        healthy=outcomes.count("healthy"),
        failed=outcomes.count("failed"),
    )


__all__ = ["NightlyRun", "check_all", "check_domain", "checker_for", "ensure_allowed", "run_check"]
