"""Sync test set-up: accounts connected through the API (real Dovecot mailboxes of the mail world),
and ``SyncRunner``s driven step by step (``lease_round``, ``poll_now``, ``run_due``).

Other tests' mailboxes share the run's database; ``park_others`` gives their sync rows to an owner that
never polls (a live lease far in the future), so a runner here claims only this test's mailboxes.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.state import AppState
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import InboundMessage, MailboxFolder, MailboxSync
from nimbus_api.sync.runner import SyncConfig, SyncRunner
from tests.conftest import Tenant, account_payload
from tests.servers.mail_world import MailWorld

PARKED = "parked-by-sync-tests"


def config(**overrides: object) -> SyncConfig:
    values: dict[str, object] = {
        "capacity": 100,
        "concurrency": 8,
        "lease_seconds": 30.0,
        "max_message_bytes": 2 * 1024 * 1024,
        "window_days": 14,
        "idle_close_seconds": 900.0,
        "backoff_max_seconds": 1800.0,
    }
    values.update(overrides)
    return SyncConfig(**values)  # type: ignore[arg-type]


@dataclass
class Account:
    id: uuid.UUID
    email: str
    workspace_id: uuid.UUID


RunnerFactory = Callable[..., SyncRunner]


async def park_others(sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> None:
    async with sessionmaker() as session:
        await session.execute(
            text(
                """
                UPDATE mailbox_syncs SET lease_owner = :parked, lease_expires_at = now() + interval '1 day'
                WHERE workspace_id <> :ws
                """
            ),
            {"parked": PARKED, "ws": workspace_id},
        )
        await session.commit()


@pytest.fixture
async def connect(tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]) -> Callable[..., Awaitable[Account]]:
    async def factory(**overrides: object) -> Account:
        email = str(overrides.pop("email", f"inbox-{secrets.token_hex(4)}@example.test"))
        r = await tenant.client.post("/v1/email-accounts", json=account_payload(email=email, **overrides))
        assert r.status_code == 201, r.text
        await park_others(sessionmaker, tenant.workspace_id)
        return Account(id=uuid.UUID(r.json()["id"]), email=email.lower(), workspace_id=tenant.workspace_id)

    return factory


@pytest.fixture
async def make_runner(
    sessionmaker: async_sessionmaker[AsyncSession], app_state: AppState, vault: Vault
) -> AsyncIterator[RunnerFactory]:
    runners: list[SyncRunner] = []
    async with sessionmaker() as session:  # workers of earlier tests (killed ones too) are gone now
        await session.execute(text("DELETE FROM sync_workers"))
        await session.commit()

    def factory(owner: str | None = None, **overrides: object) -> SyncRunner:
        runner = SyncRunner(
            sessionmaker,
            app_state.verifier.net,
            vault,
            config(**overrides),
            owner=owner or f"test-{secrets.token_hex(4)}",
        )
        runners.append(runner)
        return runner

    yield factory
    for runner in runners:
        await runner.stop()


async def inbound(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> list[InboundMessage]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(InboundMessage).where(InboundMessage.account_id == account_id).order_by(InboundMessage.uid)
        )
        return list(rows)


async def sync_row(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> MailboxSync:
    async with sessionmaker() as session:
        return await session.get_one(MailboxSync, account_id)


async def folders(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> dict[str, MailboxFolder]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(MailboxFolder).where(MailboxFolder.account_id == account_id))
        return {row.name: row for row in rows}


def deliver(world: MailWorld, account: Account, raw: bytes, *, folder: str | None = None) -> None:
    world.dovecot.deliver_lmtp(account.email, raw, folder=folder)


def mail(subject: str, *, sender: str = "prospect@example.org", message_id: str | None = None, **headers: str) -> bytes:
    lines = [
        f"From: Pat Prospect <{sender}>",
        "To: someone@example.test",
        f"Subject: {subject}",
        f"Message-ID: <{message_id or secrets.token_hex(8) + '@example.org'}>",
        "Date: Thu, 03 Dec 2026 10:00:00 +0000",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
        "",
        f"Body of {subject}.",
        "",
    ]
    return "\r\n".join(lines).encode()


async def connect_inboxes(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], count: int, prefix: str, *, daily_send_limit: int
) -> tuple[list[str], list[uuid.UUID]]:
    """``count`` mailboxes of the mail world connected through the API, ready to send (stage 3, score 80)
    and read every 30 s; returns their addresses and ids."""
    from sqlalchemy import update

    from nimbus_api.models import EmailAccount

    emails = [f"{prefix}-{i}-{secrets.token_hex(3)}@example.test" for i in range(count)]
    inboxes: list[uuid.UUID] = []
    for email in emails:
        r = await tenant.client.post("/v1/email-accounts", json=account_payload(email=email))
        assert r.status_code == 201, r.text
        inboxes.append(uuid.UUID(r.json()["id"]))
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(EmailAccount)
            .where(EmailAccount.id.in_(inboxes))
            .values(current_stage=5, overall_score=80.0, sync_interval_seconds=30, daily_send_limit=daily_send_limit)
        )
    return emails, inboxes
