"""The bounce guard with four real ``nimbus worker`` processes ingesting at once: four inboxes of one
campaign, each over the threshold by its own bounce reports, read by whichever worker holds its mailbox.
Every inbox is disabled for the campaign exactly once, and the campaign, left without an inbox, is paused
exactly once (the last two disables race in two processes)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.kit.db import utcnow
from nimbus_api.models import Campaign, CampaignAccount, Event, MailboxSync
from nimbus_api.sending.sender import SenderDeps, run_inbox
from tests.conftest import Tenant
from tests.inbox.conftest import dsn_report
from tests.sending.conftest import Campaigns, campaigns, deps, pool  # noqa: F401 - fixtures
from tests.sending.fleet import Workers
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import connect_inboxes, park_others

INBOXES = 4
SENDS = 25  # per inbox: over the minimum sample of 20
BOUNCES = 3  # per inbox: 12 % > 5 %
ENV = {
    "NIMBUS_SYNC_ENABLED": "true",
    "NIMBUS_SYNC_LEASE_SECONDS": "6",
    "NIMBUS_WEBHOOK_DISPATCHER": "false",
}


async def _events(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant, kind: str) -> list[Event]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(select(Event).where(Event.workspace_id == tenant.workspace_id, Event.type == kind))
        )


async def test_four_workers_disable_each_inbox_once_and_pause_once(
    tenant: Tenant,
    campaigns: Campaigns,  # noqa: F811
    deps: SenderDeps,  # noqa: F811
    mail_world: MailWorld,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    emails, inboxes = await connect_inboxes(tenant, sessionmaker, INBOXES, "guard", daily_send_limit=SENDS)
    contacts = [f"g{i}-{secrets.token_hex(3)}@example.org" for i in range(INBOXES * SENDS)]
    campaign_id = await campaigns.campaign(inboxes, contacts)
    async with sessionmaker() as session, session.begin():
        (await session.get_one(Campaign, campaign_id)).bounce_rate_threshold = 5.0
    await campaigns.dispatch(campaign_id)
    for inbox in inboxes:
        await run_inbox(deps, inbox, max_seconds=30)
    sent = [m for m in await campaigns.messages(campaign_id) if m.state == "sent"]
    per_inbox = Counter(m.account_id for m in sent)
    assert per_inbox == dict.fromkeys(inboxes, SENDS), per_inbox
    by_id = dict(zip(inboxes, emails, strict=True))
    bounced: Counter[uuid.UUID] = Counter()
    for message in sent:
        assert message.account_id is not None
        if bounced[message.account_id] < BOUNCES:
            bounced[message.account_id] += 1
            email = by_id[message.account_id]
            mail_world.dovecot.deliver_lmtp(email, dsn_report(email, message.to_email, message))
    await park_others(sessionmaker, tenant.workspace_id)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(MailboxSync).where(MailboxSync.account_id.in_(inboxes)).values(next_poll_at=utcnow())
        )

    workers = Workers(settings, tmp_path, **ENV)
    try:
        for _ in range(4):
            workers.start()
        deadline = time.monotonic() + 90
        while len(await _events(sessionmaker, tenant, "account.disabled")) < INBOXES:
            assert time.monotonic() < deadline, workers.logs()
            await asyncio.sleep(0.3)
        await asyncio.sleep(3)  # a second disable or pause would show now
    finally:
        workers.kill_all()

    disabled = await _events(sessionmaker, tenant, "account.disabled")
    assert sorted(e.payload["data"]["account_id"] for e in disabled) == sorted(str(i) for i in inboxes)
    assert {e.payload["data"]["by"] for e in disabled} == {"bounce_guard"}
    paused = await _events(sessionmaker, tenant, "campaign.paused")
    assert [e.payload["data"]["reason"] for e in paused] == ["all_accounts_disabled"]
    async with sessionmaker() as session:
        campaign = await session.get_one(Campaign, campaign_id)
        members = list(await session.scalars(select(CampaignAccount).where(CampaignAccount.campaign_id == campaign_id)))
    assert (campaign.status, campaign.paused_reason) == ("paused", "all_accounts_disabled")
    assert all(m.disabled_at is not None for m in members)
    assert len(await _events(sessionmaker, tenant, "message.bounced")) == INBOXES * BOUNCES
