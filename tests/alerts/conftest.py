"""Rows the alert and monitoring tests drive: inboxes, domains and sync rows written as the product's
own code would leave them (the columns the rules watch), and the events read back."""

from __future__ import annotations

import secrets
import uuid
from datetime import time
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Campaign, Contact, Domain, EmailAccount, Enrollment, Event, MailboxSync

Sm = async_sessionmaker[AsyncSession]


class World:
    """Inboxes and domains of test workspaces, and their watched columns."""

    def __init__(self, sm: Sm) -> None:
        self.sm = sm

    async def domain(self, workspace_id: uuid.UUID, name: str | None = None) -> uuid.UUID:
        async with self.sm() as session, session.begin():
            domain = Domain(workspace_id=workspace_id, name=name or f"d{secrets.token_hex(4)}.example")
            session.add(domain)
            await session.flush()
            return domain.id

    async def inbox(
        self, workspace_id: uuid.UUID, domain_id: uuid.UUID | None = None, **columns: Any
    ) -> tuple[uuid.UUID, uuid.UUID]:
        """A new inbox (on a new domain unless given): its id and its domain's id."""
        domain_id = domain_id or await self.domain(workspace_id)
        async with self.sm() as session, session.begin():
            domain = await session.get_one(Domain, domain_id)
            account = EmailAccount(
                workspace_id=workspace_id,
                domain_id=domain_id,
                email=f"inbox-{secrets.token_hex(4)}@{domain.name}",
                smtp_host="smtp.example",
                smtp_port=587,
                smtp_mode="starttls",
                campaign_types=["cold"],
                **columns,
            )
            session.add(account)
            await session.flush()
            return account.id, domain_id

    async def set_account(self, account_id: uuid.UUID, **values: Any) -> None:
        async with self.sm() as session, session.begin():
            await session.execute(update(EmailAccount).where(EmailAccount.id == account_id).values(**values))

    async def set_domain(self, domain_id: uuid.UUID, **values: Any) -> None:
        async with self.sm() as session, session.begin():
            await session.execute(update(Domain).where(Domain.id == domain_id).values(**values))

    async def sync_row(self, account_id: uuid.UUID, **values: Any) -> None:
        async with self.sm() as session, session.begin():
            account = await session.get_one(EmailAccount, account_id)
            existing = await session.get(MailboxSync, account_id)
            if existing is None:
                session.add(MailboxSync(account_id=account_id, workspace_id=account.workspace_id, **values))
            else:
                for key, value in values.items():
                    setattr(existing, key, value)

    async def enrollment(self, workspace_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
        """A campaign, a contact and its enrollment (what a message row hangs from)."""
        async with self.sm() as session, session.begin():
            campaign = Campaign(
                workspace_id=workspace_id,
                name="c",
                type="cold",
                status="active",
                send_days=list(range(7)),
                send_start=time(0),
                send_end=time(23, 59, 59),
            )
            contact = Contact(workspace_id=workspace_id, email=f"p{secrets.token_hex(4)}@example.org", fields={})
            session.add_all([campaign, contact])
            await session.flush()
            enrollment = Enrollment(
                workspace_id=workspace_id,
                campaign_id=campaign.id,
                contact_id=contact.id,
                unsubscribe_token=secrets.token_urlsafe(24),
            )
            session.add(enrollment)
            await session.flush()
            return campaign.id, contact.id, enrollment.id

    async def events(self, workspace_id: uuid.UUID, *types: str) -> list[Event]:
        stmt = select(Event).where(Event.workspace_id == workspace_id)
        if types:
            stmt = stmt.where(Event.type.in_(types))
        async with self.sm() as session:
            return list(await session.scalars(stmt.order_by(Event.id)))


@pytest.fixture
def world(sessionmaker: Sm) -> World:
    return World(sessionmaker)
