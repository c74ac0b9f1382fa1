"""arq job: ``refresh_oauth_tokens`` (cron, every minute) refreshes the access tokens that expire within
``NIMBUS_OAUTH_REFRESH_MARGIN_SECONDS``, so that sends and syncs rarely meet an expired one, and forgets
connect attempts older than ``ATTEMPT_RETENTION`` (the frontend reads an outcome within minutes).
Idempotent: what is due is what PostgreSQL says, and ``tokens.current`` re-reads the grant under the
account's lock, so a token a send refreshed meanwhile is not refreshed again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.db import utcnow
from nimbus_api.models import EmailAccount, OAuthAttempt, OAuthGrant
from nimbus_api.oauth import tokens
from nimbus_api.oauth.tokens import REAUTHORIZATION_REQUIRED, RefreshUnavailable
from nimbus_api.worker.context import resources

log = structlog.get_logger(__name__)
ACTOR = Actor.system("oauth_refresh")
BATCH = 200
ATTEMPT_RETENTION = timedelta(days=30)


async def refresh_due(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, settings: Settings
) -> dict[str, int]:
    horizon = utcnow() + timedelta(seconds=settings.oauth_refresh_margin_seconds)
    async with sessionmaker() as session:
        due = list(
            await session.scalars(
                select(OAuthGrant.account_id)
                .join(EmailAccount, EmailAccount.id == OAuthGrant.account_id)
                .where(
                    OAuthGrant.access_expires_at <= horizon,
                    EmailAccount.disabled_reason.is_distinct_from(REAUTHORIZATION_REQUIRED),
                )
                .order_by(OAuthGrant.access_expires_at)
                .limit(BATCH)
            )
        )
    counts = {"refreshed": 0, "reauthorization_required": 0, "unavailable": 0}
    for account_id in due:
        try:
            async with sessionmaker() as session, session.begin():
                token = await tokens.current(session, vault, settings, account_id, actor=ACTOR, purpose="oauth_refresh")
        except RefreshUnavailable:
            counts["unavailable"] += 1
            continue
        counts["refreshed" if token is not None else "reauthorization_required"] += 1
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(OAuthAttempt).where(OAuthAttempt.created_at < utcnow() - ATTEMPT_RETENTION))
    if due:
        log.info("oauth_tokens_refreshed", **counts)
    return counts


async def refresh_oauth_tokens(ctx: dict[str, Any]) -> dict[str, int]:
    res = resources(ctx)
    return await refresh_due(res.sessionmaker, res.vault, res.settings)
