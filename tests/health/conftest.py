"""Health test fixtures: a fresh workspace per test, and inboxes loaded straight into the database (their
health needs their rows, not a verified connection)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Vault
from nimbus_api.models import Event
from nimbus_api.workspaces import service as workspaces
from tests.health.fleet import Fleet, seed_fleet

Sm = async_sessionmaker[AsyncSession]


@pytest.fixture
async def workspace_id(sessionmaker: Sm, vault: Vault) -> uuid.UUID:
    async with sessionmaker() as session, session.begin():
        workspace = await workspaces.create_workspace(session, vault, f"health-{secrets.token_hex(5)}")
    return workspace.id


async def quiet_fleet(sm: Sm, workspace_id: uuid.UUID, inboxes: int) -> Fleet:
    """Inboxes with no activity, on domains whose verdicts are not known yet: new custom-SMTP inboxes."""
    async with sm() as session, session.begin():
        fleet = await seed_fleet(
            session, workspace_id, inboxes=inboxes, messages=0, attempts=0, inbound=0, now=datetime.now(UTC)
        )
        await session.execute(
            text("UPDATE domains SET dns_status = 'unknown', blocklist_status = 'unknown' WHERE workspace_id = :ws"),
            {"ws": workspace_id},
        )
        await session.execute(
            text("UPDATE email_accounts SET warmup_progress = 0 WHERE workspace_id = :ws"), {"ws": workspace_id}
        )
        await session.execute(text("DELETE FROM mailbox_syncs WHERE workspace_id = :ws"), {"ws": workspace_id})
        await session.execute(
            text("DELETE FROM account_daily_usage WHERE account_id = ANY(:ids)"), {"ids": fleet.account_ids}
        )
    return fleet


async def health_events(sm: Sm, workspace_id: uuid.UUID) -> list[Event]:
    async with sm() as session:
        rows = await session.scalars(
            select(Event)
            .where(Event.workspace_id == workspace_id, Event.type == "account.health_changed")
            .order_by(Event.id)
        )
        return list(rows)
