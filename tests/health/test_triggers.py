"""What asks for an inbox's recompute right away, end to end: a bounce report and a complaint read from the
inbox's real mailbox (``inbox.effects``), and a login the SMTP server refuses (``sending.record``). Each
marks the inbox in the transaction that records it; the next requested run recomputes it and clears the mark."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.health.tasks import run_requested
from nimbus_api.models import EmailAccount
from nimbus_api.sending.sender import SenderDeps, run_inbox
from tests.inbox.conftest import Loop, loop, make_loop
from tests.sending.conftest import Campaigns, campaigns, deps, pool
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import make_runner

__all__ = ["campaigns", "deps", "loop", "make_loop", "make_runner", "pool"]
Sm = async_sessionmaker[AsyncSession]


async def _health(sm: Sm, account_id: uuid.UUID) -> tuple[datetime | None, dict[str, Any] | None]:
    async with sm() as session:
        row = (
            await session.execute(
                select(EmailAccount.health_requested_at, EmailAccount.health_components).where(
                    EmailAccount.id == account_id
                )
            )
        ).one()
        return row[0], row[1]


async def _recomputed(sm: Sm, account_id: uuid.UUID) -> dict[str, Any]:
    requested, _ = await _health(sm, account_id)
    assert requested is not None
    await run_requested(sm, batch=10_000)
    requested, components = await _health(sm, account_id)
    assert requested is None and components is not None
    return components


async def test_a_bounce_report_asks_for_a_recompute_that_counts_it(loop: Loop) -> None:
    await loop.send_step()
    assert (await _health(loop.sessionmaker, loop.inbox_id))[0] is None  # sending alone moves nothing at once
    loop.deliver(loop.dsn(loop.contacts[0]))
    await loop.sync()
    components = await _recomputed(loop.sessionmaker, loop.inbox_id)
    bounce = components["bounce_rate"]
    assert (bounce["data"]["numerator"], bounce["data"]["denominator"]) == (1, 3)
    assert bounce["score"] == 50.0  # 3 sends: below the sample, neutral for now


async def test_a_complaint_asks_for_a_recompute_that_counts_it(loop: Loop) -> None:
    await loop.send_step()
    loop.deliver(loop.complaint(loop.contacts[0]))
    await loop.sync()
    components = await _recomputed(loop.sessionmaker, loop.inbox_id)
    assert components["complaint_rate"]["data"]["numerator"] == 1


async def test_a_refused_smtp_login_asks_for_a_recompute_that_counts_it(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: Sm
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        login = (await session.get_one(EmailAccount, inbox)).smtp_username
    assert login and mail_world.smtp.users is not None
    campaign_id = await campaigns.campaign([inbox], ["someone@example.org"])
    await campaigns.dispatch(campaign_id)
    password = mail_world.smtp.users[login]
    mail_world.smtp.users[login] = "changed-at-the-provider"
    try:
        assert (await run_inbox(deps, inbox, max_seconds=10)).stopped_reason == "smtp.auth_failed"
    finally:
        mail_world.smtp.users[login] = password
    components = await _recomputed(sessionmaker, inbox)
    auth = components["auth_failures"]
    assert auth["value"] == 1.0 and auth["data"]["numerator"] == 1
    assert auth["score"] == 50.0  # one attempt in all: a failure below the sample keeps it at most neutral
