"""The sending pool: attach, list with eligibility, detach; accounts of another workspace are unknown."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.kit.db import utcnow
from nimbus_api.models import AccountDailyUsage, Domain, EmailAccount
from tests.campaigns.conftest import InboxFactory, create_campaign
from tests.conftest import Tenant, TenantFactory


async def _set(sessionmaker: async_sessionmaker[AsyncSession], account_id: str, **values: object) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id == uuid.UUID(account_id)).values(**values))


async def test_attach_list_detach(tenant: Tenant, make_inbox: InboxFactory) -> None:
    campaign = await create_campaign(tenant)
    url = f"/v1/campaigns/{campaign['id']}/accounts"
    first, second = await make_inbox(tenant), await make_inbox(tenant)
    r = await tenant.client.post(url, json={"account_ids": [first]})
    assert r.status_code == 200, r.text
    assert [a["account_id"] for a in r.json()["data"]] == [first]
    # attaching again (and with a new one) is fine: nothing doubles
    r = await tenant.client.post(url, json={"account_ids": [first, second, second]})
    assert sorted(a["account_id"] for a in r.json()["data"]) == sorted([first, second])
    listed = (await tenant.client.get(url)).json()
    assert [a["account_id"] for a in listed["data"]] == [second, first], "newest account first"
    entry = listed["data"][0]
    assert entry["eligible"] is True and entry["reason"] is None
    assert (entry["daily_send_limit"], entry["sends_today"], entry["remaining_today"]) == (100, 0, 100)
    page = (await tenant.client.get(url, params={"limit": 1})).json()
    assert len(page["data"]) == 1 and page["next_cursor"]
    rest = (await tenant.client.get(url, params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [a["account_id"] for a in rest["data"]] == [first] and rest["next_cursor"] is None
    assert (await tenant.client.get(f"/v1/campaigns/{campaign['id']}")).json()["pool_size"] == 2

    assert (await tenant.client.delete(f"{url}/{first}")).status_code == 204
    gone = await tenant.client.delete(f"{url}/{first}")
    assert gone.status_code == 404 and gone.json()["code"] == "campaign_account.not_found"
    assert [a["account_id"] for a in (await tenant.client.get(url)).json()["data"]] == [second]
    # the account itself is untouched
    assert (await tenant.client.get(f"/v1/email-accounts/{first}")).status_code == 200


async def test_an_account_may_serve_many_campaigns(tenant: Tenant, make_inbox: InboxFactory) -> None:
    inbox = await make_inbox(tenant)
    campaigns = [await create_campaign(tenant, name=f"c{i}") for i in range(2)]
    for campaign in campaigns:
        r = await tenant.client.post(f"/v1/campaigns/{campaign['id']}/accounts", json={"account_ids": [inbox]})
        assert r.status_code == 200
    for campaign in campaigns:
        assert (await tenant.client.get(f"/v1/campaigns/{campaign['id']}")).json()["pool_size"] == 1


async def test_a_foreign_or_unknown_account_is_404_and_nothing_is_attached(
    make_tenant: TenantFactory, make_inbox: InboxFactory
) -> None:
    a, b = await make_tenant(), await make_tenant()
    mine, theirs = await make_inbox(a), await make_inbox(b)
    campaign = await create_campaign(a)
    url = f"/v1/campaigns/{campaign['id']}/accounts"
    for ids in ([theirs], [mine, theirs], [str(uuid.uuid4())]):
        r = await a.client.post(url, json={"account_ids": ids})
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "email_account.not_found"
        assert mine not in r.text
    assert (await a.client.get(url)).json()["data"] == []
    # B's campaign is not A's either
    theirs_campaign = await create_campaign(b)
    r = await a.client.post(f"/v1/campaigns/{theirs_campaign['id']}/accounts", json={"account_ids": [mine]})
    assert r.status_code == 404 and r.json()["code"] == "campaign.not_found"
    r = await a.client.get(f"/v1/campaigns/{theirs_campaign['id']}/accounts")
    assert r.status_code == 404


async def test_pool_list_shows_each_reason(
    tenant: Tenant, make_inbox: InboxFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    campaign = await create_campaign(tenant, type="nurture")
    url = f"/v1/campaigns/{campaign['id']}/accounts"
    ok = await make_inbox(tenant, stage=2)
    off = await make_inbox(tenant)
    weak = await make_inbox(tenant, score=10)
    young = await make_inbox(tenant, stage=1)
    cooling = await make_inbox(tenant)
    cold_only = await make_inbox(tenant)
    spent = await make_inbox(tenant)
    await tenant.client.patch(f"/v1/email-accounts/{off}", json={"is_active": False})
    await tenant.client.patch(f"/v1/email-accounts/{cold_only}", json={"campaign_types": ["cold"]})
    await _set(sessionmaker, cooling, cooldown_until=utcnow() + timedelta(hours=2))
    async with sessionmaker() as session, session.begin():
        session.add(AccountDailyUsage(account_id=uuid.UUID(spent), day=utcnow().date(), sends=100, new_contacts=3))
    ids = [ok, off, weak, young, cooling, cold_only, spent]
    await tenant.client.post(url, json={"account_ids": ids})
    reasons = {a["account_id"]: a["reason"] for a in (await tenant.client.get(url)).json()["data"]}
    assert reasons == {
        ok: None,
        off: "disabled",
        weak: "below_min_health",
        young: "stage",
        cooling: "cooldown",
        cold_only: "restricted",
        spent: "budget_exhausted",
    }
    listed = {a["account_id"]: a for a in (await tenant.client.get(url)).json()["data"]}
    assert (listed[spent]["sends_today"], listed[spent]["remaining_today"]) == (100, 0)

    # pausing the domain pauses every inbox on it (the mail world's accounts share example.test)
    domain_id = (await tenant.client.get(f"/v1/email-accounts/{ok}")).json()["domain_id"]
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Domain).where(Domain.id == uuid.UUID(domain_id)).values(is_paused=True))
    reasons = {a["account_id"]: a["reason"] for a in (await tenant.client.get(url)).json()["data"]}
    assert reasons[ok] == "domain_paused"

    started = (await tenant.client.post(f"/v1/campaigns/{campaign['id']}/start")).json()
    assert started["throttled"]["is_throttled"] is True
    assert {r["account_id"] for r in started["throttled"]["reasons"]} == set(ids)
