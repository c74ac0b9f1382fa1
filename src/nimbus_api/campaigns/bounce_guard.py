"""The bounce guard: an inbox whose bounce rate in one campaign goes over the campaign's threshold leaves
that campaign's rotation, exactly once, and a campaign whose whole pool left is paused.

Rate, per (campaign, inbox) = permanent bounces / SMTP transactions, both counted over the inbox's messages
in that campaign since it joined or was last re-enabled (``campaign_accounts.counts_since``):

* a transaction is a message that got a final answer: ``sent`` (including those later ``bounced``) or
  ``failed`` with a 5xx at send time; every step counts, as the providers' dashboards count;
* a permanent bounce is a ``bounced`` message (a 5xx bounce report) or a ``failed`` one with a 5xx at send
  time, hard or not: a block for spam says more about the sender than a typo does.

``check`` runs in the transaction that records each new permanent bounce (the sync's effects, the
sender's 5xx). It locks the pool row first (``FOR UPDATE``), so concurrent bounces of the same pair (four
workers ingesting at once) are counted one after another and the disable happens once; nothing happens
before ``min_sample`` transactions. Disabling:

1. ``campaign_accounts.disabled_at`` / ``disabled_reason = 'bounce_rate'`` / the figures;
2. its queued and deferred messages of that campaign go back to the pool: deleted (none was delivered),
   their budget reservations given back, their enrollments due at once with no inbox of their own, so the
   dispatcher picks another one (a threaded follow-up carries the thread from its new inbox);
3. ``account.disabled`` (``by: bounce_guard``, the campaign, the rate);
4. when no inbox of the pool is left enabled, the campaign (if active) is paused with ``paused_reason:
   all_accounts_disabled`` and ``campaign.paused`` fires; what was queued waits, nothing is lost. The
   campaign's row is locked for that count, so concurrent disables of the last inboxes pause it once.

Rotation skips a pool member with ``disabled_at`` set (``sending.rotation``); ``pool.reenable`` (``POST
/v1/campaigns/{id}/accounts/{account_id}/reenable``) clears it and restarts its count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.events.catalogue import AccountDisabledData, CampaignPausedData
from nimbus_api.models import Campaign, CampaignAccount, EmailAccount

_COUNTS = text(
    """
    SELECT count(*) FILTER (WHERE state IN ('sent', 'bounced') OR (state = 'failed' AND reply_code >= 500)) AS sends,
           count(*) FILTER (WHERE state = 'bounced' OR (state = 'failed' AND reply_code >= 500)) AS bounces
    FROM messages
    WHERE campaign_id = :campaign_id AND account_id = :account_id
      AND state IN ('sent', 'bounced', 'failed')
      AND (CAST(:since AS timestamptz) IS NULL OR updated_at >= CAST(:since AS timestamptz))
    """
)
_HAND_BACK = text(
    """
    WITH gone AS (
        DELETE FROM messages m
        WHERE m.campaign_id = :campaign_id AND m.account_id = :account_id AND m.state IN ('queued', 'deferred')
        RETURNING m.enrollment_id, m.budget_day, m.step
    ), released AS (
        UPDATE account_daily_usage u
        SET sends = GREATEST(u.sends - g.n, 0), new_contacts = GREATEST(u.new_contacts - g.first, 0)
        FROM (SELECT budget_day, count(*) AS n, count(*) FILTER (WHERE step = 0) AS first
              FROM gone WHERE budget_day IS NOT NULL GROUP BY budget_day) g
        WHERE u.account_id = :account_id AND u.day = g.budget_day
    ), moved AS (
        UPDATE enrollments e
        SET account_id = NULL, next_send_at = CASE WHEN e.id IN (SELECT enrollment_id FROM gone) THEN :now
                                                   ELSE e.next_send_at END,
            defer_reason = NULL, updated_at = :now
        WHERE e.campaign_id = :campaign_id AND e.account_id = :account_id AND e.status = 'active'
        RETURNING e.id
    )
    SELECT (SELECT count(*) FROM gone) AS handed_back, (SELECT count(*) FROM moved) AS moved
    """
)


@dataclass(frozen=True)
class Figures:
    sends: int
    bounces: int

    @property
    def rate(self) -> float:
        return 100.0 * self.bounces / self.sends if self.sends else 0.0


async def figures(
    session: AsyncSession, campaign_id: uuid.UUID, account_id: uuid.UUID, since: datetime | None
) -> Figures:
    row = (await session.execute(_COUNTS, {"campaign_id": campaign_id, "account_id": account_id, "since": since})).one()
    return Figures(sends=int(row.sends), bounces=int(row.bounces))


async def check(
    session: AsyncSession, campaign_id: uuid.UUID, account_id: uuid.UUID, *, min_sample: int, now: datetime
) -> bool:
    """After a new permanent bounce: disable the pair if its rate is over the threshold. True if it did."""
    member = await session.scalar(
        select(CampaignAccount)
        .where(CampaignAccount.campaign_id == campaign_id, CampaignAccount.account_id == account_id)
        .with_for_update()
    )
    if member is None or member.disabled_at is not None:
        return False
    campaign = await session.get_one(Campaign, campaign_id)
    counted = await figures(session, campaign_id, account_id, member.counts_since)
    if counted.sends < min_sample or counted.rate <= campaign.bounce_rate_threshold:
        return False
    member.disabled_at = now
    member.disabled_reason = "bounce_rate"
    member.disabled_detail = {
        "bounce_rate": round(counted.rate, 2),
        "bounces": counted.bounces,
        "sends": counted.sends,
        "threshold": campaign.bounce_rate_threshold,
        "min_sample": min_sample,
        "counted_since": member.counts_since.isoformat() if member.counts_since else None,
    }
    await session.flush()
    await session.execute(_HAND_BACK, {"campaign_id": campaign_id, "account_id": account_id, "now": now})
    email = await session.scalar(select(EmailAccount.email).where(EmailAccount.id == account_id))
    events.emit(
        session,
        campaign.workspace_id,
        "account.disabled",
        AccountDisabledData(
            account_id=account_id,
            email=email or "",
            reason="bounce_rate",
            by="bounce_guard",
            campaign_id=campaign_id,
            bounce_rate=round(counted.rate, 2),
            bounces=counted.bounces,
            sends=counted.sends,
            threshold=campaign.bounce_rate_threshold,
        ),
    )
    await _pause_if_pool_gone(session, campaign, now)
    return True


async def _pause_if_pool_gone(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    # The campaign's row is locked before counting: two workers disabling the pool's last two inboxes at
    # the same moment would otherwise each still see the other's inbox enabled, and neither would pause.
    # Under READ COMMITTED the count after the lock sees every disable committed before it.
    await session.execute(select(Campaign.id).where(Campaign.id == campaign.id).with_for_update())
    enabled = await session.scalar(
        select(func.count())
        .select_from(CampaignAccount)
        .where(CampaignAccount.campaign_id == campaign.id, CampaignAccount.disabled_at.is_(None))
    )
    if enabled:
        return
    paused = await session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.status == "active")
        .values(status="paused", paused_reason="all_accounts_disabled", updated_at=now)
        .returning(Campaign.id)
    )
    if paused.first() is None:
        return
    events.emit(
        session,
        campaign.workspace_id,
        "campaign.paused",
        CampaignPausedData(campaign_id=campaign.id, name=campaign.name, reason="all_accounts_disabled"),
    )
