"""The ramped limit is the one the send budget spends: the rotation's pick (SQL), the lease's
reservation, eligibility and the pool's remaining budget (Python), and a real send through SMTP."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from nimbus_api.campaigns.pool import load_pools
from nimbus_api.kit.db import utc_day
from nimbus_api.models import AccountDailyUsage, Campaign, EmailAccount, Message
from nimbus_api.sending.lease import _reserve_today
from nimbus_api.sending.rotation import PickRequest, pick_inboxes
from tests.inbox.conftest import Loop, campaigns, deps, make_loop, make_runner, pool
from tests.stages.conftest import Inboxes

__all__ = ["campaigns", "deps", "make_loop", "make_runner", "pool"]

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _request(inboxes: Inboxes) -> PickRequest:
    assert inboxes.campaign_id
    return PickRequest(
        workspace_id=inboxes.workspace_id,
        campaign_id=inboxes.campaign_id,
        campaign_type="cold",
        min_health_score=0.0,
        first_step=False,
        now=NOW,
    )


async def test_the_pick_reserves_up_to_the_stage_limit_not_the_ceiling(inboxes: Inboxes) -> None:
    inbox = await inboxes.add(current_stage=3, overall_score=80.0, daily_send_limit=100)
    async with inboxes.sessionmaker() as session, session.begin():
        assert len(await pick_inboxes(session, _request(inboxes), 100)) == 30  # stage 3: 30 a day
        assert await pick_inboxes(session, _request(inboxes), 1) == []
        campaign = await session.get_one(Campaign, inboxes.campaign_id)
    async with inboxes.sessionmaker() as session:
        pools = await load_pools(session, [campaign.id], NOW)
        [member] = pools[campaign.id]
        assert (member.sends_today, member.remaining_today) == (30, 0)
        assert member.reason(campaign, NOW) == "budget_exhausted"
    # promoted to stage 5: the configured ceiling is the limit again, the same day
    async with inboxes.sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id == inbox).values(current_stage=5))
        assert len(await pick_inboxes(session, _request(inboxes), 100)) == 70
    async with inboxes.sessionmaker() as session:
        usage = await session.get_one(AccountDailyUsage, (inbox, utc_day(NOW)))
        assert usage.sends == 100


async def test_the_leases_reservation_uses_the_same_limit(inboxes: Inboxes) -> None:
    inbox = await inboxes.add(current_stage=1, overall_score=80.0, daily_send_limit=100)
    async with inboxes.sessionmaker() as session, session.begin():
        granted = await _reserve_today(session, inbox, [1] * 12, NOW)
    assert granted == [True] * 10 + [False] * 2  # stage 1: 10 a day
    tight = await inboxes.add(current_stage=4, overall_score=80.0, daily_send_limit=3)
    async with inboxes.sessionmaker() as session, session.begin():
        assert await _reserve_today(session, tight, [1] * 5, NOW) == [True] * 3 + [False] * 2  # the ceiling wins


async def test_a_real_send_spends_the_stage_limit(make_loop: object) -> None:
    loop: Loop = await make_loop(33)  # type: ignore[operator]
    async with loop.sessionmaker() as session, session.begin():  # stage 3, configured for 1,000 a day
        await session.execute(update(EmailAccount).where(EmailAccount.id == loop.inbox_id).values(current_stage=3))
    await loop.send_step()
    async with loop.sessionmaker() as session:
        states = list(
            await session.scalars(
                select(Message.state).where(Message.campaign_id == loop.campaign_id, Message.step == 0)
            )
        )
    assert states.count("sent") == 30
    r = await loop.tenant.client.get(f"/v1/campaigns/{loop.campaign_id}/accounts")
    [entry] = r.json()["data"]
    assert (entry["daily_send_limit"], entry["effective_daily_send_limit"], entry["remaining_today"]) == (1000, 30, 0)
    assert entry["reason"] == "budget_exhausted"
