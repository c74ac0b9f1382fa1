"""Provider quotas: SES credentials stored per account, the quota read on a schedule, the limit kept under it.

Limit rule (one direction only): when SES's Max24HourSend is below the inbox's ``daily_send_limit``, the
limit is lowered to it (an account event ``daily_limit_lowered`` says from, to and why); a larger quota
never raises the limit, which stays a person's decision, and a PATCH asking for more than the last quota
read is refused (422). Max24HourSend -1 (unlimited) changes nothing. The quota is the SES account's: inboxes
sharing one SES account each stay under it, not their sum.

Refresh: an account whose credentials were just set has ``provider_quota_checked_at`` NULL, so the next
worker tick (every minute) reads it; after that every ``NIMBUS_SES_QUOTA_REFRESH_SECONDS``. A tick claims
due accounts by stamping ``checked_at`` in a committed statement (SKIP LOCKED: workers never read one
twice), then for each decrypts the key pair (audited, purpose ``provider_quota``), calls SES, and records
the figures or the failure in a transaction of its own. A failure keeps the last figures (``read_at``
says how old they are) and records ``error_code`` / ``error_detail``; nothing of the secret is logged,
stored beside it, or raised.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Actor, CredentialKind, Vault
from nimbus_api.kit import metrics
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.kit.problems import FieldError, ValidationProblem
from nimbus_api.models import AccountEvent, EmailAccount
from nimbus_api.provider_quotas import ses
from nimbus_api.provider_quotas.schemas import ProviderQuotaOut, SesApiIn

log = structlog.get_logger(__name__)
ACTOR = Actor.system("provider_quota")
KIND: CredentialKind = "ses_api"


# --- credentials (the accounts API) ----------------------------------------------------------------


async def set_ses_api(session: AsyncSession, vault: Vault, account: EmailAccount, given: SesApiIn | None) -> None:
    """Store (or, with None, remove) the account's SES API key pair. The figures of earlier credentials
    (maybe another SES account's) are dropped, and the quota is due at once."""
    account.provider_quota_max_24h = account.provider_quota_sent_24h = account.provider_quota_max_rate = None
    account.provider_quota_read_at = account.provider_quota_checked_at = None
    account.provider_quota_error_code = account.provider_quota_error_detail = None
    if given is None:
        await vault.remove(session, account.id, KIND)
        account.ses_region = None
        return
    pair = json.dumps(
        {"access_key_id": given.access_key_id, "secret_access_key": given.secret_access_key.get_secret_value()}
    )
    await vault.store(session, workspace_id=account.workspace_id, account_id=account.id, kind=KIND, secret=Secret(pair))
    account.ses_region = given.region


def check_limit(account: EmailAccount, limit: int | None) -> None:
    """A person may not set ``daily_send_limit`` above the provider's last known quota."""
    cap = account.provider_quota_max_24h
    if limit is not None and cap is not None and cap >= 0 and limit > math.floor(cap):
        message = f"above the SES account's 24-hour quota ({math.floor(cap)} sends, Max24HourSend)"
        raise ValidationProblem([FieldError(field="daily_send_limit", message=message, type="value_error")])


def quota_out(account: EmailAccount) -> ProviderQuotaOut | None:
    if account.ses_region is None:
        return None
    return ProviderQuotaOut(
        provider="ses",
        region=account.ses_region,
        max_24_hour_send=account.provider_quota_max_24h,
        sent_last_24_hours=account.provider_quota_sent_24h,
        max_send_rate=account.provider_quota_max_rate,
        read_at=account.provider_quota_read_at,
        checked_at=account.provider_quota_checked_at,
        error_code=account.provider_quota_error_code,
        error_detail=account.provider_quota_error_detail,
    )


# --- refresh (the worker) ----------------------------------------------------------------------------

_CLAIM = text(
    """
UPDATE email_accounts SET provider_quota_checked_at = :now
WHERE id IN (
    SELECT id FROM email_accounts
    WHERE ses_region IS NOT NULL AND (provider_quota_checked_at IS NULL OR provider_quota_checked_at < :due_before)
    ORDER BY provider_quota_checked_at NULLS FIRST
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""
)


@dataclass(frozen=True)
class RefreshConfig:
    net: NetContext
    endpoint_url: str | None
    timeout: float
    interval: timedelta
    ca_file: str | None = None
    batch: int = 50


async def claim_due(session: AsyncSession, now: datetime, interval: timedelta, limit: int) -> list[uuid.UUID]:
    rows = await session.execute(_CLAIM, {"now": now, "due_before": now - interval, "limit": limit})
    return [row.id for row in rows]


async def refresh_due(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, config: RefreshConfig
) -> dict[str, int]:
    """Read the quota of every due account (at most ``config.batch``); returns counts by result."""
    async with sessionmaker() as session, session.begin():
        due = await claim_due(session, utcnow(), config.interval, config.batch)
    counts = {"ok": 0, "error": 0}
    for account_id in due:
        counts["ok" if await refresh_one(sessionmaker, vault, config, account_id) else "error"] += 1
    return counts


async def refresh_one(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, config: RefreshConfig, account_id: uuid.UUID
) -> bool:
    """One account: decrypt (audited), ask SES, record. True when the quota was read."""
    async with sessionmaker() as session, session.begin():
        account = await session.get(EmailAccount, account_id)
        if account is None or account.ses_region is None:
            return False
        region = account.ses_region
        pair = await vault.reveal_for_account(session, account_id, KIND, actor=ACTOR, purpose="provider_quota")
    if pair is None:
        return False
    keys = json.loads(pair.reveal())
    credentials = ses.SesCredentials(keys["access_key_id"], Secret(keys["secret_access_key"]), region)
    del keys
    try:
        quota = await ses.get_send_quota(
            credentials,
            net=config.net,
            endpoint_url=config.endpoint_url,
            timeout=config.timeout,
            ca_file=config.ca_file,
        )
    except ses.QuotaError as exc:
        await _record_failure(sessionmaker, account_id, exc)
        metrics.PROVIDER_QUOTA_READS.labels("error").inc()
        log.warning("provider_quota_failed", account_id=str(account_id), code=exc.code)
        return False
    await _record(sessionmaker, account_id, quota)
    metrics.PROVIDER_QUOTA_READS.labels("ok").inc()
    return True


async def _record(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID, quota: ses.SendQuota) -> None:
    async with sessionmaker() as session, session.begin():
        account = await session.get(EmailAccount, account_id, with_for_update=True)
        if account is None:
            return
        now = utcnow()
        account.provider_quota_max_24h = quota.max_24_hour_send
        account.provider_quota_sent_24h = quota.sent_last_24_hours
        account.provider_quota_max_rate = quota.max_send_rate
        account.provider_quota_read_at = account.provider_quota_checked_at = now
        account.provider_quota_error_code = account.provider_quota_error_detail = None
        cap = math.floor(quota.max_24_hour_send)
        if quota.max_24_hour_send >= 0 and account.daily_send_limit > cap:
            session.add(
                AccountEvent(
                    workspace_id=account.workspace_id,
                    account_id=account.id,
                    kind="daily_limit_lowered",
                    actor=ACTOR.value,
                    detail={"from": account.daily_send_limit, "to": cap, "reason": "ses_max_24_hour_send"},
                )
            )
            log.info(
                "daily_limit_lowered", account_id=str(account_id), limit_from=account.daily_send_limit, limit_to=cap
            )
            account.daily_send_limit = cap


async def _record_failure(
    sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID, error: ses.QuotaError
) -> None:
    async with sessionmaker() as session, session.begin():
        account = await session.get(EmailAccount, account_id, with_for_update=True)
        if account is None:
            return
        account.provider_quota_checked_at = utcnow()
        account.provider_quota_error_code = error.code
        account.provider_quota_error_detail = error.detail[:500]
