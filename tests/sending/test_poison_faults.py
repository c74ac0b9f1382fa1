"""A poison recipient with real ``nimbus worker`` processes: one recipient the submission server refuses
(``550 5.7.1 <erin@xn--bcher-kva.test>: Recipient address rejected``, as Postfix's recipient restrictions
answer) among 100 over 3 inboxes is 99 delivered, 1 failed and no inbox paused; an inbox whose login
really fails is paused with the reason on record, and its sends go out through the others, each once.

The SMTP server is the sink process (``tests/servers/sink_process.py``), which logs every accepted
message; dispatch and sweep are the workers' crons, nudged by enqueued ticks as in ``test_faults``.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.models import AccountEvent, EmailAccount, Message
from tests.sending.conftest import Campaigns
from tests.sending.fleet import (
    Workers,
    all_terminal,
    arq,
    deliveries,
    enqueue,
    sending_campaign,
    states,
    wait_until,
)
from tests.servers.mail_world import SMTP_PASSWORD, MailWorld
from tests.servers.sink_process import SinkProcess

__all__ = ["arq"]  # the fixture, imported for the tests of this module

CONTACTS = 100


async def _campaign(
    campaigns: Campaigns, inboxes: list[uuid.UUID], sink: SinkProcess, poison: str
) -> tuple[uuid.UUID, list[str]]:
    """A campaign over ``inboxes`` (pointed at the sink) with 99 ordinary contacts and ``poison`` among them."""
    tag = secrets.token_hex(3)
    addresses = [f"c{i}-{tag}@example.org" for i in range(CONTACTS - 1)]
    addresses.insert(CONTACTS // 2, poison)
    campaign_id, _ = await sending_campaign(
        campaigns, sink, inboxes=inboxes, contacts=addresses, daily_send_limit=10_000, max_connections=1
    )
    return campaign_id, addresses


async def _logins(sm: async_sessionmaker[AsyncSession], inboxes: list[uuid.UUID]) -> list[str]:
    async with sm() as session:
        return [str((await session.get_one(EmailAccount, i)).smtp_username) for i in inboxes]


async def _run(
    sm: async_sessionmaker[AsyncSession], settings: Settings, arq: ArqRedis, tmp_path: Path, campaign_id: uuid.UUID
) -> None:
    workers = Workers(settings, tmp_path, NIMBUS_SMTP_RATE_PER_CONNECTION="0", NIMBUS_SEND_BATCH=str(CONTACTS))
    try:
        procs = [workers.start(), workers.start()]
        await enqueue(arq, "dispatch_tick")

        async def finished() -> bool:
            await enqueue(arq, "dispatch_tick")  # hand-backs are placed again at once, not at the next cron
            return await all_terminal(sm, campaign_id, CONTACTS)

        await wait_until(finished, 60, "every message to be terminal", workers, every=1.0)
        assert [p.poll() for p in procs] == [None, None], workers.logs()  # the workers lived throughout
    finally:
        workers.kill_all()


async def _message_states(sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID) -> dict[str, tuple[str, str]]:
    """Each message's (recipient, state) by its Message-ID header."""
    async with sm() as session:
        rows = await session.execute(
            select(Message.message_id_header, Message.to_email, Message.state).where(Message.campaign_id == campaign_id)
        )
        return {header: (to, state) for header, to, state in rows.all()}


def _poison(tag: str) -> tuple[str, str, dict[str, str]]:
    poison, wire = f"erin-{tag}@bücher.test", f"erin-{tag}@xn--bcher-kva.test"
    return poison, wire, {wire: f"550 5.7.1 <{wire}>: Recipient address rejected: Access denied"}


async def test_one_poison_recipient_among_100_over_3_inboxes_with_real_workers(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    mail_world: MailWorld,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inboxes = [await campaigns.inbox() for _ in range(3)]
    poison, _, refuse = _poison(secrets.token_hex(3))
    certs = mail_world.certs
    with SinkProcess(certs.server_cert, certs.server_key, tmp_path / "sink.log", refuse=refuse) as sink:
        campaign_id, _ = await _campaign(campaigns, inboxes, sink, poison)
        await _run(sessionmaker, settings, arq, tmp_path, campaign_id)
        records = sink.records()

    by_header = await _message_states(sessionmaker, campaign_id)
    seen = Counter(state for _, state in by_header.values())
    assert seen == Counter({"sent": CONTACTS - 1, "failed": 1})
    assert [to for to, state in by_header.values() if state == "failed"] == [poison]
    counts = deliveries(records)
    assert all(counts[h] == 1 for h, (_, state) in by_header.items() if state == "sent")  # each exactly once
    assert sum(counts.values()) == CONTACTS - 1
    async with sessionmaker() as session:
        paused = await session.scalar(
            select(EmailAccount.id).where(EmailAccount.id.in_(inboxes), EmailAccount.disabled_at.is_not(None))
        )
        paused_events = await session.scalar(
            select(AccountEvent.id).where(AccountEvent.account_id.in_(inboxes), AccountEvent.kind == "paused")
        )
    assert paused is None and paused_events is None
    with capsys.disabled():
        print(f"\n[poison] states={dict(seen)} deliveries={sum(counts.values())} paused_inboxes=0")


async def test_an_inbox_whose_login_fails_is_paused_with_the_reason_and_the_others_send_everything_once(
    campaigns: Campaigns,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    mail_world: MailWorld,
    arq: ArqRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inboxes = [await campaigns.inbox() for _ in range(3)]
    logins = await _logins(sessionmaker, inboxes)
    # The sink knows the first two logins only: the third inbox's AUTH is refused (535), a true credential failure.
    users = dict.fromkeys(logins[:2], SMTP_PASSWORD)
    poison, _, refuse = _poison(secrets.token_hex(3))
    certs = mail_world.certs
    with SinkProcess(certs.server_cert, certs.server_key, tmp_path / "sink.log", users=users, refuse=refuse) as sink:
        campaign_id, addresses = await _campaign(campaigns, inboxes, sink, poison)
        await _run(sessionmaker, settings, arq, tmp_path, campaign_id)
        records = sink.records()

    seen = await states(sessionmaker, campaign_id)
    assert seen == Counter({"sent": CONTACTS - 1, "failed": 1})
    by_header = await _message_states(sessionmaker, campaign_id)
    counts = deliveries(records)
    assert all(counts[h] == 1 for h, (_, state) in by_header.items() if state == "sent")
    async with sessionmaker() as session:
        accounts = {a.id: a for a in await session.scalars(select(EmailAccount).where(EmailAccount.id.in_(inboxes)))}
        events = list(await session.scalars(select(AccountEvent).where(AccountEvent.account_id.in_(inboxes))))
        senders = Counter(
            (await session.execute(select(Message.account_id).where(Message.campaign_id == campaign_id))).scalars()
        )
    assert [accounts[i].disabled_reason for i in inboxes] == [None, None, "smtp.auth_failed"]
    assert inboxes[2] not in senders  # everything it had went out through the other two
    (event,) = events
    assert (event.account_id, event.kind, event.actor) == (inboxes[2], "paused", "system:sender")
    assert event.detail["reason"] == "smtp.auth_failed" and event.detail["stage"] == "auth"
    assert event.detail["server_reply"]["code"] == 535
    assert event.detail["recipient"] in addresses
    assert uuid.UUID(event.detail["message_id"])
    with capsys.disabled():
        print(f"\n[login] states={dict(seen)} paused={accounts[inboxes[2]].disabled_reason} event={event.detail}")
