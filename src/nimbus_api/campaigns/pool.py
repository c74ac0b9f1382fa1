"""The sending pool: which inboxes send for a campaign, and whether each may send now.

An inbox may serve many campaigns; attaching one twice is no error (nothing changes). Eligibility is
``campaigns.eligibility.ineligibility_reason`` applied to what ``load_pools`` reads in one query: the
inbox, its domain's pause flag and its usage row of today (UTC).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Select, and_, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.errors import AccountNotFound
from nimbus_api.campaigns.eligibility import IneligibleReason, ineligibility_reason
from nimbus_api.campaigns.errors import PoolAccountNotFound
from nimbus_api.campaigns.schemas import BounceGuardState, PoolAccountRead, Throttled, ThrottleReason
from nimbus_api.kit.db import utc_day
from nimbus_api.kit.pagination import decode_cursor, encode_cursor
from nimbus_api.models import AccountDailyUsage, Campaign, CampaignAccount, Domain, EmailAccount
from nimbus_api.stages.limits import effective_limit


@dataclass(frozen=True)
class PoolInbox:
    account: EmailAccount
    domain_paused: bool
    usage: AccountDailyUsage | None
    added_at: datetime
    member: CampaignAccount | None = None

    @property
    def sends_today(self) -> int:
        return self.usage.sends if self.usage is not None else 0

    @property
    def remaining_today(self) -> int:
        return max(effective_limit(self.account) - self.sends_today, 0)

    def reason(self, campaign: Campaign, now: datetime) -> IneligibleReason | None:
        return ineligibility_reason(
            self.account,
            domain_paused=self.domain_paused,
            usage=self.usage,
            campaign=campaign,
            now=now,
            disabled_in_campaign=self.member is not None and self.member.disabled_at is not None,
        )


def _pool_query(day: date) -> Select[CampaignAccount, EmailAccount, bool, AccountDailyUsage]:
    return (
        select(CampaignAccount, EmailAccount, Domain.is_paused, AccountDailyUsage)
        .join(EmailAccount, EmailAccount.id == CampaignAccount.account_id)
        .join(Domain, Domain.id == EmailAccount.domain_id)
        .outerjoin(
            AccountDailyUsage,
            and_(AccountDailyUsage.account_id == EmailAccount.id, AccountDailyUsage.day == day),
        )
    )


async def load_pools(
    session: AsyncSession, campaign_ids: Iterable[uuid.UUID], now: datetime
) -> dict[uuid.UUID, list[PoolInbox]]:
    """Every pool inbox of these campaigns, with what eligibility needs (one query)."""
    ids = list(campaign_ids)
    pools: dict[uuid.UUID, list[PoolInbox]] = defaultdict(list)
    if not ids:
        return pools
    stmt = _pool_query(utc_day(now))
    rows = await session.execute(stmt.where(CampaignAccount.campaign_id.in_(ids)).order_by(EmailAccount.id))
    for member, account, paused, usage in rows:
        pools[member.campaign_id].append(
            PoolInbox(account=account, domain_paused=paused, usage=usage, added_at=member.created_at, member=member)
        )
    return pools


def throttled(campaign: Campaign, inboxes: Sequence[PoolInbox], now: datetime) -> Throttled:
    reasons = []
    for inbox in inboxes:
        reason = inbox.reason(campaign, now)
        if reason is not None:
            reasons.append(ThrottleReason(account_id=inbox.account.id, reason=reason))
    return Throttled(is_throttled=campaign.status == "active" and len(reasons) == len(inboxes), reasons=reasons)


def pool_read(campaign: Campaign, inbox: PoolInbox, now: datetime) -> PoolAccountRead:
    reason = inbox.reason(campaign, now)
    account = inbox.account
    return PoolAccountRead(
        account_id=account.id,
        email=account.email,
        is_active=account.is_active,
        overall_score=account.overall_score,
        current_stage=account.current_stage,
        daily_send_limit=account.daily_send_limit,
        effective_daily_send_limit=effective_limit(account),
        sends_today=inbox.sends_today,
        remaining_today=inbox.remaining_today,
        eligible=reason is None,
        reason=reason,
        added_at=inbox.added_at,
        bounce_guard=BounceGuardState(
            disabled_at=inbox.member.disabled_at,
            reason=inbox.member.disabled_reason,
            detail=inbox.member.disabled_detail,
            counts_since=inbox.member.counts_since,
        )
        if inbox.member is not None
        else None,
    )


async def attach(
    session: AsyncSession, workspace_id: uuid.UUID, campaign: Campaign, account_ids: Sequence[uuid.UUID]
) -> None:
    """Add accounts of this workspace to the pool; any unknown or foreign id refuses the whole request."""
    wanted = set(account_ids)
    found = set(
        await session.scalars(
            select(EmailAccount.id).where(EmailAccount.workspace_id == workspace_id, EmailAccount.id.in_(wanted))
        )
    )
    missing = sorted(str(i) for i in wanted - found)
    if missing:
        raise AccountNotFound(
            f"no email account {', '.join(missing[:10])} in this workspace", extra={"account_ids": missing}
        )
    await session.execute(
        insert(CampaignAccount)
        .values([{"campaign_id": campaign.id, "account_id": account_id} for account_id in sorted(wanted)])
        .on_conflict_do_nothing(index_elements=["campaign_id", "account_id"])
    )


async def detach(session: AsyncSession, campaign: Campaign, account_id: uuid.UUID) -> None:
    removed = await session.scalar(
        delete(CampaignAccount)
        .where(CampaignAccount.campaign_id == campaign.id, CampaignAccount.account_id == account_id)
        .returning(CampaignAccount.account_id)
    )
    if removed is None:
        raise PoolAccountNotFound()


async def pool_size(session: AsyncSession, campaign_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(CampaignAccount).where(CampaignAccount.campaign_id == campaign_id)
        )
        or 0
    )


async def list_page(
    session: AsyncSession, campaign: Campaign, cursor: str | None, limit: int, now: datetime
) -> tuple[list[PoolAccountRead], str | None]:
    stmt = _pool_query(utc_day(now)).where(CampaignAccount.campaign_id == campaign.id)
    if cursor:
        stmt = stmt.where(EmailAccount.id < decode_cursor(cursor))
    rows = (await session.execute(stmt.order_by(EmailAccount.id.desc()).limit(limit + 1))).all()
    inboxes = [
        PoolInbox(account=account, domain_paused=paused, usage=usage, added_at=member.created_at, member=member)
        for member, account, paused, usage in rows[:limit]
    ]
    next_cursor = encode_cursor(inboxes[-1].account.id) if len(rows) > limit and inboxes else None
    return [pool_read(campaign, inbox, now) for inbox in inboxes], next_cursor


async def reenable(session: AsyncSession, campaign: Campaign, account_id: uuid.UUID, now: datetime) -> PoolAccountRead:
    """Back into the campaign's rotation after the bounce guard took it out; its count restarts now.
    A member that is not disabled is left as it is (the call is safe to repeat)."""
    member = await session.scalar(
        select(CampaignAccount)
        .where(CampaignAccount.campaign_id == campaign.id, CampaignAccount.account_id == account_id)
        .with_for_update()
    )
    if member is None:
        raise PoolAccountNotFound()
    if member.disabled_at is not None:
        member.disabled_at = member.disabled_reason = member.disabled_detail = None
        member.counts_since = now
        await session.flush()
    row = (
        await session.execute(
            _pool_query(utc_day(now)).where(
                CampaignAccount.campaign_id == campaign.id, CampaignAccount.account_id == account_id
            )
        )
    ).one()
    fresh, account, paused, usage = row
    inbox = PoolInbox(account=account, domain_paused=paused, usage=usage, added_at=fresh.created_at, member=fresh)
    return pool_read(campaign, inbox, now)
