"""Warmup test set-up: inboxes written straight into the database (planner tests: no mail is sent), inboxes
connected through the API (the exchange tests: real mailboxes of the mail world), the engine's deps, and
the sync's runner factory (``tests.sync.conftest``).

The warmup pool is the whole deployment, so each test first takes every other inbox of the run out of it
(``isolate``): earlier tests' inboxes must not be chosen as recipients, nor their rows sent or acted on.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import Domain, EmailAccount
from nimbus_api.warmup.marker import Marker
from nimbus_api.warmup.sender import WarmupDeps
from nimbus_api.workspaces import service as workspaces
from tests.sync.conftest import make_runner as make_runner

MakeInbox = Callable[..., Awaitable[EmailAccount]]


async def isolate(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE email_accounts SET warmup_enabled = false WHERE warmup_enabled"))
        await session.execute(
            text("UPDATE warmup_messages SET state = 'skipped' WHERE state IN ('planned', 'sending')")
        )
        await session.execute(
            text("UPDATE warmup_messages SET handled_at = now() WHERE received_at IS NOT NULL AND handled_at IS NULL")
        )


@pytest.fixture
async def new_workspace(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> Callable[[], Awaitable[uuid.UUID]]:
    async def factory() -> uuid.UUID:
        async with sessionmaker() as session, session.begin():
            workspace = await workspaces.create_workspace(session, vault, f"warm-{secrets.token_hex(5)}")
        return workspace.id

    return factory


@pytest.fixture
async def make_inbox(sessionmaker: async_sessionmaker[AsyncSession]) -> MakeInbox:
    """An inbox row in the warmup exchange (no server behind it: for the planner only)."""

    async def factory(workspace_id: uuid.UUID, email: str, **fields: Any) -> EmailAccount:
        async with sessionmaker() as session, session.begin():
            name = email.rpartition("@")[2]
            domain = await session.scalar(
                select(Domain).where(Domain.workspace_id == workspace_id, Domain.name == name)
            )
            if domain is None:
                domain = Domain(workspace_id=workspace_id, name=name)
                session.add(domain)
                await session.flush()
            values: dict[str, Any] = {
                "workspace_id": workspace_id,
                "domain_id": domain.id,
                "email": email,
                "from_name": "Sam Sender",
                "smtp_host": "smtp.example.test",
                "smtp_port": 587,
                "smtp_mode": "starttls",
                "imap_host": "imap.example.test",
                "imap_port": 993,
                "imap_mode": "ssl",
                "campaign_types": ["cold"],
                "warmup_enabled": True,
            }
            values.update(fields)
            account = EmailAccount(**values)
            session.add(account)
        return account

    return factory


def warmup_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update=overrides)


@pytest.fixture
def make_deps(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, app_state: AppState, settings: Settings
) -> Callable[..., WarmupDeps]:
    def factory(**overrides: Any) -> WarmupDeps:
        return WarmupDeps(
            sessionmaker=sessionmaker,
            vault=vault,
            net=app_state.verifier.net,
            marker=Marker.from_keyring(vault.keyring),
            settings=warmup_settings(settings, **overrides),
        )

    return factory
