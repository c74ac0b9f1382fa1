"""Rotation: the pick-and-reserve statement under each eligibility rule, and under concurrency.

Inboxes are inserted as rows here (not connected through the API): what is tested is the SQL.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.db import utc_day
from nimbus_api.models import AccountDailyUsage, Campaign, CampaignAccount, Domain, EmailAccount
from nimbus_api.sending.rotation import PickRequest, pick_inbox, pick_inboxes, release
from nimbus_api.workspaces import service as workspaces

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Pool:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> None:
        self.sessionmaker = sessionmaker
        self.workspace_id = workspace_id
        self.campaign_id: uuid.UUID | None = None
        self.domain_id: uuid.UUID | None = None

    async def setup(self, campaign_type: str = "cold", min_health: float = 70) -> None:
        async with self.sessionmaker() as session, session.begin():
            domain = Domain(workspace_id=self.workspace_id, name=f"{secrets.token_hex(4)}.example.test")
            session.add(domain)
            campaign = Campaign(
                workspace_id=self.workspace_id,
                name="c",
                type=campaign_type,
                status="active",
                min_health_score=min_health,
            )
            session.add(campaign)
            await session.flush()
            self.campaign_id, self.domain_id = campaign.id, domain.id

    async def inbox(self, **fields: Any) -> uuid.UUID:
        values: dict[str, Any] = {
            "workspace_id": self.workspace_id,
            "domain_id": self.domain_id,
            "email": f"i-{secrets.token_hex(4)}@example.test",
            "smtp_host": "smtp.example.test",
            "smtp_port": 587,
            "smtp_mode": "starttls",
            "campaign_types": ["cold", "nurture"],
            "current_stage": 3,
            "overall_score": 80.0,
            "daily_send_limit": 100,
        }
        values.update(fields)
        async with self.sessionmaker() as session, session.begin():
            account = EmailAccount(**values)
            session.add(account)
            await session.flush()
            assert self.campaign_id
            session.add(CampaignAccount(campaign_id=self.campaign_id, account_id=account.id))
        return account.id

    def request(self, **overrides: Any) -> PickRequest:
        assert self.campaign_id
        values: dict[str, Any] = {
            "workspace_id": self.workspace_id,
            "campaign_id": self.campaign_id,
            "campaign_type": "cold",
            "min_health_score": 70.0,
            "first_step": True,
            "now": NOW,
        }
        values.update(overrides)
        return PickRequest(**values)

    async def pick(self, **overrides: Any) -> uuid.UUID | None:
        async with self.sessionmaker() as session, session.begin():
            return await pick_inbox(session, self.request(**overrides))


@pytest.fixture
async def pool(sessionmaker: async_sessionmaker[AsyncSession], vault: Vault) -> Pool:
    async with sessionmaker() as session, session.begin():
        workspace = await workspaces.create_workspace(session, vault, f"rot-{secrets.token_hex(5)}")
    p = Pool(sessionmaker, workspace.id)
    await p.setup()
    return p


async def test_least_recently_used_inbox_goes_first(pool: Pool) -> None:
    a = await pool.inbox(last_sent_at=NOW - timedelta(hours=1))
    b = await pool.inbox(last_sent_at=NOW - timedelta(hours=2))
    c = await pool.inbox()  # never used
    picks = [await pool.pick(now=NOW + timedelta(seconds=i)) for i in range(6)]
    assert picks == [c, b, a, c, b, a]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"is_active": False}, "paused by a person"),
        ({"disabled_at": NOW, "disabled_reason": "smtp.auth_failed"}, "disabled"),
        ({"overall_score": 69.9}, "below min health"),
        ({"current_stage": 2}, "stage below 3 for cold"),
        ({"cooldown_until": NOW + timedelta(minutes=5)}, "cooldown"),
        ({"campaign_types": ["nurture"]}, "restricted to nurture"),
        ({"daily_send_limit": 0}, "budget exhausted"),
        ({"last_sent_at": NOW - timedelta(seconds=30), "min_send_interval_seconds": 60}, "interval not past"),
    ],
)
async def test_each_rule_excludes_an_inbox(pool: Pool, fields: dict[str, Any], why: str) -> None:
    await pool.inbox(**fields)
    assert await pool.pick() is None, why


async def test_rules_that_pass_at_their_boundaries(pool: Pool) -> None:
    ok = await pool.inbox(
        overall_score=70.0,
        current_stage=3,
        cooldown_until=NOW,
        last_sent_at=NOW - timedelta(seconds=60),
        min_send_interval_seconds=60,
    )
    assert await pool.pick() == ok


async def test_nurture_needs_stage_two_and_domain_pause_blocks(
    pool: Pool, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inbox = await pool.inbox(current_stage=2)
    assert await pool.pick() is None
    assert await pool.pick(campaign_type="nurture") == inbox
    async with sessionmaker() as session, session.begin():
        domain = await session.get_one(Domain, pool.domain_id)
        domain.is_paused = True
    assert await pool.pick(campaign_type="nurture", now=NOW + timedelta(seconds=1)) is None


async def test_budget_counts_every_send_and_new_contacts_only_step_one(
    pool: Pool, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inbox = await pool.inbox(daily_send_limit=5, daily_new_contacts_limit=2)
    firsts = [await pool.pick(first_step=True) for _ in range(3)]
    assert firsts == [inbox, inbox, None]  # two new contacts today
    follow_ups = [await pool.pick(first_step=False) for _ in range(4)]
    assert follow_ups == [inbox, inbox, inbox, None]  # 5 sends in all
    async with sessionmaker() as session:
        usage = await session.get_one(AccountDailyUsage, (inbox, utc_day(NOW)))
    assert (usage.sends, usage.new_contacts) == (5, 2)
    # A reservation given back (its message never reached SMTP) can be spent again.
    async with sessionmaker() as session, session.begin():
        await release(session, inbox, first_step=True, day=utc_day(NOW))
    assert await pool.pick(first_step=True) == inbox
    # The next UTC day starts afresh.
    assert await pool.pick(now=NOW + timedelta(days=1)) == inbox


async def test_follow_up_goes_through_its_inbox_or_waits(pool: Pool) -> None:
    first = await pool.inbox()
    other = await pool.inbox(last_sent_at=NOW - timedelta(days=1))
    assert await pool.pick(only_account=first, first_step=False) == first
    await pool.pick(only_account=other)
    assert await pool.pick(only_account=uuid.uuid4()) is None


async def test_concurrent_dispatchers_never_double_spend(
    pool: Pool, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inboxes = [await pool.inbox(daily_send_limit=7) for _ in range(6)]
    picks: list[uuid.UUID] = []

    async def dispatcher() -> None:
        while True:
            async with sessionmaker() as session, session.begin():
                picked = await pick_inbox(session, pool.request())
                await asyncio.sleep(0)  # hold the row lock across a scheduling point
            if picked is None:
                return
            picks.append(picked)

    await asyncio.gather(*(dispatcher() for _ in range(8)))
    # A dispatcher that found every inbox locked by others returns early; the others finish the budget.
    assert Counter(picks) == dict.fromkeys(inboxes, 7)
    async with sessionmaker() as session:
        sends = list(
            await session.scalars(select(AccountDailyUsage.sends).where(AccountDailyUsage.account_id.in_(inboxes)))
        )
    assert sends == [7] * 6


async def _usage(pool: Pool, account_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    async with pool.sessionmaker() as session:
        rows = await session.scalars(
            select(AccountDailyUsage).where(
                AccountDailyUsage.account_id.in_(account_ids), AccountDailyUsage.day == utc_day(NOW)
            )
        )
        return {row.account_id: (row.sends, row.new_contacts) for row in rows}


@pytest.mark.parametrize("seed", range(6))
async def test_one_statement_picking_many_equals_consecutive_single_picks(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, seed: int
) -> None:
    """Same inboxes in the same order, same reservations, same rotation afterwards, for pools with
    mixed room (send limits, new-contact limits, used budgets, a minimum interval)."""
    import random

    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 7)):
        spec: dict[str, Any] = {
            "daily_send_limit": rng.choice([1, 2, 3, 5, 40]),
            "last_sent_at": NOW - timedelta(minutes=rng.randint(1, 600)) if rng.random() < 0.8 else None,
        }
        if rng.random() < 0.4:
            spec["daily_new_contacts_limit"] = rng.choice([0, 1, 2, 4])
        if rng.random() < 0.15:
            spec["min_send_interval_seconds"] = 1
        specs.append(spec)
    count = rng.randint(1, 30)
    first_step = rng.random() < 0.7
    results = []
    for bulk in (False, True):
        async with sessionmaker() as session, session.begin():
            workspace = await workspaces.create_workspace(session, vault, f"rot-{secrets.token_hex(5)}")
        p = Pool(sessionmaker, workspace.id)
        await p.setup()
        ids = [await p.inbox(**spec) for spec in specs]
        async with sessionmaker() as session, session.begin():
            if bulk:
                picked = await pick_inboxes(session, p.request(first_step=first_step), count)
            else:
                picked = []
                for _ in range(count):
                    one = await pick_inbox(session, p.request(first_step=first_step))
                    if one is None:
                        break
                    picked.append(one)
        usage = await _usage(p, ids)
        after = [await p.pick(first_step=False, now=NOW + timedelta(seconds=10 + i)) for i in range(3)]
        index = {account_id: n for n, account_id in enumerate(ids)}
        results.append(
            (
                [index[a] for a in picked],
                {index[a]: u for a, u in usage.items()},
                [index[a] if a else None for a in after],
            )
        )
    assert results[0] == results[1]
    assert len(results[1][0]) <= count


async def test_picking_many_never_spends_a_budget_twice_under_concurrency(pool: Pool) -> None:
    ids = [await pool.inbox(daily_send_limit=7) for _ in range(3)]

    async def grab() -> list[uuid.UUID]:
        async with pool.sessionmaker() as session, session.begin():
            return await pick_inboxes(session, pool.request(), 5)

    picked = [a for batch in await asyncio.gather(*(grab() for _ in range(8))) for a in batch]
    assert all(n <= 7 for n in Counter(picked).values())  # locked inboxes are skipped, never shared
    while batch := await grab():
        picked += batch
    assert Counter(picked) == dict.fromkeys(ids, 7)
    assert {a: u[0] for a, u in (await _usage(pool, ids)).items()} == dict.fromkeys(ids, 7)


async def test_a_key_share_lock_on_the_inbox_does_not_make_it_busy(pool: Pool) -> None:
    """A sender recording attempts takes foreign-key (key share) locks on the inbox row: the pick must
    not skip the inbox for that, only for another pick's lock."""
    from sqlalchemy import text

    inbox = await pool.inbox()
    async with pool.sessionmaker() as holder, holder.begin():
        await holder.execute(text("SELECT 1 FROM email_accounts WHERE id = :id FOR KEY SHARE"), {"id": inbox})
        assert await pool.pick() == inbox
        async with pool.sessionmaker() as picker, picker.begin():
            await picker.execute(text("SELECT 1 FROM email_accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": inbox})
            assert await pool.pick(now=NOW + timedelta(seconds=1)) is None  # a concurrent pick holds it
