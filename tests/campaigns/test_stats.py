"""Campaign statistics and the workspace's monthly quota."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.kit.db import utcnow
from nimbus_api.models import AccountDailyUsage, Enrollment, Message
from tests.campaigns.conftest import InboxFactory, create_campaign, create_contacts
from tests.conftest import Tenant

STATES = ["queued", "leased", "sent", "deferred", "failed", "suppressed", "expired", "unknown", "bounced", "cancelled"]


async def test_stats_count_everything_with_zeros(
    tenant: Tenant, make_inbox: InboxFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await create_campaign(tenant)
    url = f"/v1/campaigns/{campaign['id']}"
    empty = (await tenant.client.get(f"{url}/stats")).json()
    assert empty["messages"] == dict.fromkeys(STATES, 0)
    assert empty["enrollments"] == {"active": 0, "completed": 0, "replied": 0, "stopped": 0, "bounced": 0, "failed": 0}
    assert (empty["sends_today"], empty["campaign_sent_today"], empty["inboxes"]) == (0, 0, [])

    busy, fresh = await make_inbox(tenant, daily_send_limit=50), await make_inbox(tenant)
    await tenant.client.post(f"{url}/accounts", json={"account_ids": [busy, fresh]})
    contacts = await create_contacts(tenant, *(f"s{i}@example.com" for i in range(4)))
    await tenant.client.post(f"{url}/enrollments", json={"contact_ids": contacts})
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        session.add(AccountDailyUsage(account_id=uuid.UUID(busy), day=now.date(), sends=50, new_contacts=10))
        session.add(AccountDailyUsage(account_id=uuid.UUID(fresh), day=(now - timedelta(days=1)).date(), sends=7))
    async with sessionmaker() as session, session.begin():
        rows = list(
            await session.scalars(select(Enrollment).where(Enrollment.campaign_id == uuid.UUID(campaign["id"])))
        )
        for (index, row), state in zip(enumerate(rows), ["sent", "sent", "failed", "queued"], strict=True):
            session.add(
                Message(
                    workspace_id=tenant.workspace_id,
                    campaign_id=uuid.UUID(campaign["id"]),
                    enrollment_id=row.id,
                    contact_id=row.contact_id,
                    account_id=uuid.UUID(busy),
                    step=0,
                    state=state,
                    to_email=f"s{index}@example.com",
                    subject="Hi",
                    message_id_header=f"<{secrets.token_hex(8)}@example.test>",
                    sent_at=now - timedelta(days=index) if state == "sent" else None,
                )
            )
        rows[2].status = "failed"
    stats = (await tenant.client.get(f"{url}/stats")).json()
    assert stats["messages"] == {**dict.fromkeys(STATES, 0), "sent": 2, "failed": 1, "queued": 1}
    assert stats["enrollments"] == {"active": 3, "completed": 0, "replied": 0, "stopped": 0, "bounced": 0, "failed": 1}
    assert stats["sends_today"] == 50, "yesterday's usage is not today's"
    assert stats["campaign_sent_today"] == 1
    budgets = {
        i["account_id"]: (i["daily_send_limit"], i["sends_today"], i["remaining_today"]) for i in stats["inboxes"]
    }
    assert budgets == {busy: (50, 50, 0), fresh: (100, 0, 100)}
    assert stats["throttled"] == {
        "is_throttled": False,
        "reasons": [{"account_id": busy, "reason": "budget_exhausted"}],
    }

    workspace = (await tenant.client.get("/v1/workspace")).json()
    assert workspace["sent_this_month"] == (2 if now.day > 1 else 1)


async def test_monthly_send_quota(tenant: Tenant) -> None:
    workspace = (await tenant.client.get("/v1/workspace")).json()
    assert (workspace["monthly_send_quota"], workspace["sent_this_month"]) == (None, 0)
    r = await tenant.client.patch("/v1/workspace", json={"monthly_send_quota": 25_000})
    assert r.status_code == 200, r.text
    assert r.json()["monthly_send_quota"] == 25_000
    assert (await tenant.client.get("/v1/workspace")).json()["monthly_send_quota"] == 25_000
    for bad in ({"monthly_send_quota": -1}, {"monthly_send_quota": "lots"}, {"name": "renamed"}):
        r = await tenant.client.patch("/v1/workspace", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await tenant.client.patch("/v1/workspace", json={"monthly_send_quota": None})).json()[
        "monthly_send_quota"
    ] is None
