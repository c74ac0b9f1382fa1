"""Fixtures of the stage tests: inboxes inserted as rows (what is tested is the rules and the SQL) in a
fresh workspace, with a cold campaign whose pool they join."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Vault
from nimbus_api.models import Campaign, CampaignAccount, Domain, EmailAccount
from nimbus_api.workspaces import service as workspaces


class Inboxes:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> None:
        self.sessionmaker = sessionmaker
        self.workspace_id = workspace_id
        self.domain_id: uuid.UUID | None = None
        self.campaign_id: uuid.UUID | None = None

    async def setup(self) -> None:
        async with self.sessionmaker() as session, session.begin():
            domain = Domain(workspace_id=self.workspace_id, name=f"{secrets.token_hex(4)}.example.test")
            campaign = Campaign(
                workspace_id=self.workspace_id, name="c", type="cold", status="active", min_health_score=0
            )
            session.add_all([domain, campaign])
            await session.flush()
            self.domain_id, self.campaign_id = domain.id, campaign.id

    async def add(self, **fields: Any) -> uuid.UUID:
        values: dict[str, Any] = {
            "workspace_id": self.workspace_id,
            "domain_id": self.domain_id,
            "email": f"i-{secrets.token_hex(5)}@example.test",
            "smtp_host": "smtp.example.test",
            "smtp_port": 587,
            "smtp_mode": "starttls",
            "campaign_types": ["cold", "nurture"],
        }
        values.update(fields)
        async with self.sessionmaker() as session, session.begin():
            account = EmailAccount(**values)
            session.add(account)
            await session.flush()
            assert self.campaign_id
            session.add(CampaignAccount(campaign_id=self.campaign_id, account_id=account.id))
        return account.id

    async def get(self, account_id: uuid.UUID) -> EmailAccount:
        async with self.sessionmaker() as session:
            return await session.get_one(EmailAccount, account_id)


@pytest.fixture
async def inboxes(sessionmaker: async_sessionmaker[AsyncSession], vault: Vault) -> Inboxes:
    async with sessionmaker() as session, session.begin():
        workspace = await workspaces.create_workspace(session, vault, f"stg-{secrets.token_hex(5)}")
    found = Inboxes(sessionmaker, workspace.id)
    await found.setup()
    return found
