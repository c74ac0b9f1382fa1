"""Fixtures of the sending tests: real inboxes connected through the API, campaign rows, a pool."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import Campaign, CampaignAccount, CampaignStep, Contact, EmailAccount, Enrollment, Message
from nimbus_api.sending.dispatcher import dispatch_campaign
from nimbus_api.sending.sender import SenderDeps
from nimbus_api.smtp.pool import SmtpPool
from tests.conftest import Tenant, account_payload

PUBLIC = "https://nimbus.example"


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[SmtpPool]:
    async with SmtpPool(build_net_context(settings), idle_timeout=5) as p:
        yield p


@pytest.fixture
def deps(sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, pool: SmtpPool) -> SenderDeps:
    return SenderDeps(sessionmaker=sessionmaker, vault=vault, pool=pool, pacer=None, public_url=PUBLIC)


class Campaigns:
    def __init__(self, sm: async_sessionmaker[AsyncSession], tenant: Tenant) -> None:
        self.sm = sm
        self.tenant = tenant

    async def point_at(self, inbox: uuid.UUID, port: int) -> None:
        """Send the inbox's mail to the SMTP server on ``port`` of 127.0.0.1 (a new credentials version, so
        no pooled connection to the old server is reused)."""
        async with self.sm() as session, session.begin():
            account = await session.get_one(EmailAccount, inbox)
            account.smtp_port = port
            account.credentials_version += 1

    async def inbox(self) -> uuid.UUID:
        r = await self.tenant.client.post("/v1/email-accounts", json=account_payload(from_name="Ada", imap=None))
        assert r.status_code == 201, r.text
        account_id = uuid.UUID(r.json()["id"])
        async with self.sm() as session, session.begin():
            account = await session.get_one(EmailAccount, account_id)
            # stage 5: fully warmed, so the stage does not cap daily_send_limit (``stages.limits``)
            account.current_stage, account.overall_score = 5, 80.0
        return account_id

    async def campaign(self, inboxes: list[uuid.UUID], contacts: list[str]) -> uuid.UUID:
        async with self.sm() as session, session.begin():
            c = Campaign(
                workspace_id=self.tenant.workspace_id,
                name="launch",
                type="cold",
                status="active",
                send_days=list(range(7)),
                send_start=time(0),
                send_end=time(23, 59, 59),
            )
            session.add(c)
            await session.flush()
            for position in range(2):
                session.add(
                    CampaignStep(
                        campaign_id=c.id,
                        position=position,
                        delay_seconds=0 if position == 0 else 3600,
                        subject_template="Hello {{ contact.first_name }}",
                        text_template="Hi {{ contact.first_name }}\nunsubscribe: {{ unsubscribe_url }}",
                        html_template="<p>Hi {{ contact.first_name }}</p>",
                    )
                )
            for inbox in inboxes:
                session.add(CampaignAccount(campaign_id=c.id, account_id=inbox))
            for address in contacts:
                contact = Contact(workspace_id=self.tenant.workspace_id, email=address, first_name="Grace", fields={})
                session.add(contact)
                await session.flush()
                session.add(
                    Enrollment(
                        workspace_id=self.tenant.workspace_id,
                        campaign_id=c.id,
                        contact_id=contact.id,
                        next_send_at=datetime.now(UTC) - timedelta(seconds=1),
                        unsubscribe_token=secrets.token_urlsafe(24),
                    )
                )
        return c.id

    async def dispatch(self, campaign_id: uuid.UUID) -> None:
        async with self.sm() as session, session.begin():
            campaign = await session.get_one(Campaign, campaign_id)
            await dispatch_campaign(session, campaign, now=datetime.now(UTC), public_url=PUBLIC, mx=None)

    async def messages(self, campaign_id: uuid.UUID) -> list[Message]:
        async with self.sm() as session:
            return list(await session.scalars(select(Message).where(Message.campaign_id == campaign_id)))


@pytest.fixture
def campaigns(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant) -> Campaigns:
    return Campaigns(sessionmaker, tenant)
