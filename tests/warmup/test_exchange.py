"""THE warmup exchange, end to end, through the mail world's real SMTP server and Dovecot.

Two inboxes on two domains, connected through the API. The mail world files every message to the second
one into its Junk folder (a spam filter). Planned, sent over SMTP, synced by the real IMAP sync, moved out
of Junk into INBOX, marked ``\\Seen`` (and ``\\Flagged``), answered in thread, the answer arriving in the
first inbox and recognised there too; none of it in the unified inbox or any campaign count; warmup
counts up, campaign budgets do not. Then the crash cases: the engine sends a warmup message at most once.
"""

from __future__ import annotations

import email
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import AccountDailyUsage, EmailAccount, InboundMessage, Message, WarmupMessage
from nimbus_api.warmup import planner, receiver, sender
from nimbus_api.warmup.sender import WarmupDeps
from tests.campaigns.conftest import create_campaign, create_contacts
from tests.conftest import Tenant, account_payload
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import RunnerFactory, park_others
from tests.warmup.conftest import isolate


def _flags(world: MailWorld, user: str, folder: str) -> dict[str, set[str]]:
    """Message-ID -> flags of the messages in ``folder``, as Dovecot holds them."""
    out = world.dovecot.doveadm("fetch", "-u", user, "flags hdr.message-id", "mailbox", folder)
    found: dict[str, set[str]] = {}
    for record in out.split("\f"):
        fields = {
            line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in record.splitlines() if ":" in line
        }
        if "hdr.message-id" in fields:
            found[fields["hdr.message-id"].strip("<>")] = set(fields.get("flags", "").split()) - {"\\Recent"}
    return found


async def _connect(tenant: Tenant, name: str) -> uuid.UUID:
    address = f"{name}-{secrets.token_hex(3)}@{name}-{secrets.token_hex(3)}.test"
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(email=address))
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


async def _pair(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], **fields: Any
) -> tuple[EmailAccount, EmailAccount]:
    await isolate(sessionmaker)
    a_id, b_id = await _connect(tenant, "alpha"), await _connect(tenant, "beta")
    await park_others(sessionmaker, tenant.workspace_id)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(EmailAccount)
            .where(EmailAccount.id.in_([a_id, b_id]))
            .values(warmup_enabled=True, sync_interval_seconds=30, **fields)
        )
    async with sessionmaker() as session:
        a, b = await session.get_one(EmailAccount, a_id), await session.get_one(EmailAccount, b_id)
    return a, b


async def _rows(sessionmaker: async_sessionmaker[AsyncSession], *ids: uuid.UUID) -> list[WarmupMessage]:
    async with sessionmaker() as session:
        found = await session.scalars(
            select(WarmupMessage)
            .where(WarmupMessage.sender_id.in_(ids) | WarmupMessage.recipient_id.in_(ids))
            .order_by(WarmupMessage.created_at)
        )
        return list(found)


async def _sync(runner: Any, *ids: uuid.UUID) -> None:
    for account_id in ids:
        await runner.poll_now(account_id)


async def test_the_exchange_between_two_inboxes(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_runner: RunnerFactory,
    make_deps: Callable[..., WarmupDeps],
) -> None:
    a, b = await _pair(tenant, sessionmaker, warmup_daily_limit=2)
    mail_world.junk_for.add(b.email)
    # a campaign of the same two inboxes, with the other inbox's address enrolled as a contact
    campaign = await create_campaign(tenant)
    stats_url = f"/v1/campaigns/{campaign['id']}/stats"
    r = await tenant.client.post(
        f"/v1/campaigns/{campaign['id']}/accounts", json={"account_ids": [str(a.id), str(b.id)]}
    )
    assert r.status_code == 200, r.text
    contacts = await create_contacts(tenant, b.email, a.email)
    r = await tenant.client.post(f"/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": contacts})
    assert r.status_code in (200, 201), r.text
    stats_before = (await tenant.client.get(stats_url)).json()
    deps = make_deps(
        warmup_reply_share=1.0,  # answer everything, flag everything: the test sees every step
        warmup_flag_share=1.0,
        warmup_max_thread_depth=1,  # one answer per thread
        warmup_reply_delay_max_minutes=0,
        warmup_daily_limit=2,
    )
    runner = make_runner()
    await runner.lease_round()
    assert {a.id, b.id} <= set(runner.held)
    await _sync(runner, a.id, b.id)  # the first poll adopts the folders (the connect-time test message)

    now = datetime.now(UTC).replace(hour=0, minute=5)
    async with sessionmaker() as session, session.begin():
        planned = await planner.plan(session, planner.PlanConfig.of(deps.settings), now)
    assert planned == 2  # one new thread each (limit 2, one left for a reply)
    end_of_day = now.replace(hour=23, minute=59)
    assert await sender.send_due(deps, now=end_of_day) == {"sent": 2}
    rows = await _rows(sessionmaker, a.id, b.id)
    thread_a = next(r for r in rows if r.sender_id == a.id)
    thread_b = next(r for r in rows if r.sender_id == b.id)

    # in the mailboxes: A's message in B's Junk, with the marker; B's message in A's INBOX
    raw = next(
        m
        for m in mail_world.dovecot.maildir_messages(b.email, folder="Junk")
        if thread_a.message_id_header.encode() in m
    )
    parsed = email.message_from_bytes(raw)
    assert parsed["X-Nimbus-Warmup"].startswith("v1.") and parsed.get_content_type() == "text/plain"
    assert parsed["Subject"] == thread_a.subject and parsed["List-Unsubscribe"] is None
    assert thread_b.message_id_header in _flags(mail_world, a.email, "INBOX")

    await _sync(runner, a.id, b.id)
    rows = {r.id: r for r in await _rows(sessionmaker, a.id, b.id)}
    assert rows[thread_a.id].landed == "junk" and rows[thread_a.id].received_at is not None
    assert rows[thread_b.id].landed == "inbox"

    assert await receiver.handle_pending(deps) == 2
    # B took A's message out of Junk: in INBOX, seen and flagged
    assert thread_a.message_id_header not in _flags(mail_world, b.email, "Junk")
    assert _flags(mail_world, b.email, "INBOX")[thread_a.message_id_header] == {"\\Seen", "\\Flagged"}
    assert _flags(mail_world, a.email, "INBOX")[thread_b.message_id_header] == {"\\Seen", "\\Flagged"}

    # the replies, sent by the same task, in thread
    assert await sender.send_due(deps, now=end_of_day) == {"sent": 2}
    rows = {r.id: r for r in await _rows(sessionmaker, a.id, b.id)}
    reply_b = next(r for r in rows.values() if r.parent_id == thread_a.id)
    assert reply_b.sender_id == b.id and reply_b.recipient_id == a.id and reply_b.depth == 1
    assert rows[thread_a.id].replied and rows[thread_a.id].rescued and rows[thread_a.id].flagged
    raw = next(m for m in mail_world.dovecot.maildir_messages(a.email) if reply_b.message_id_header.encode() in m)
    parsed = email.message_from_bytes(raw)
    assert parsed["Subject"] == "Re: " + thread_a.subject
    assert parsed["In-Reply-To"] == f"<{thread_a.message_id_header}>"
    assert parsed["References"] == f"<{thread_a.message_id_header}>"
    assert parsed["X-Nimbus-Warmup"].startswith("v1.")

    # the reply arrives in A and is recognised there too; A's reply to B lands in B's Junk and is rescued
    await _sync(runner, a.id, b.id)
    rows = {r.id: r for r in await _rows(sessionmaker, a.id, b.id)}
    assert rows[reply_b.id].received_at is not None and rows[reply_b.id].landed == "inbox"
    assert await receiver.handle_pending(deps) == 2
    assert await sender.send_due(deps, now=end_of_day) == {}  # the threads are one answer deep: nothing more
    await _sync(runner, a.id, b.id)  # B's sync meets the rescued copies in INBOX: nothing changes
    rows = {r.id: r for r in await _rows(sessionmaker, a.id, b.id)}
    assert len(rows) == 4 and all(r.state == "sent" and r.handled_at is not None for r in rows.values())
    assert [r.landed for r in rows.values() if r.recipient_id == b.id] == ["junk", "junk"]
    assert all(r.rescued for r in rows.values() if r.recipient_id == b.id)
    assert not any(r.rescued for r in rows.values() if r.recipient_id == a.id)
    assert _flags(mail_world, b.email, "Junk") == {}

    # none of it is inbound mail: not stored, not in the unified inbox, not in campaign counts
    async with sessionmaker() as session:
        stored = await session.scalar(
            select(func.count()).where(
                InboundMessage.account_id.in_([a.id, b.id]),
                InboundMessage.message_id_header.in_([r.message_id_header for r in rows.values()]),
            )
        )
        assert stored == 0
        assert await session.scalar(select(func.count()).where(Message.account_id.in_([a.id, b.id]))) == 0
        usage = await session.scalar(
            select(func.coalesce(func.sum(AccountDailyUsage.sends), 0)).where(
                AccountDailyUsage.account_id.in_([a.id, b.id])
            )
        )
        assert usage == 0  # campaign budgets untouched
        totals = dict(
            (
                await session.execute(
                    select(EmailAccount.id, EmailAccount.warmup_sent_total).where(EmailAccount.id.in_([a.id, b.id]))
                )
            ).all()
        )
        assert totals == {a.id: 2, b.id: 2}
    stats = (await tenant.client.get(stats_url)).json()
    assert stats == stats_before  # no message, no reply, no send counted in the campaign
    assert stats["enrollments"]["replied"] == 0 and stats["sends_today"] == 0
    assert {i["account_id"]: i["sends_today"] for i in stats["inboxes"]} == {str(a.id): 0, str(b.id): 0}
    listed = (await tenant.client.get("/v1/inbox", params={"limit": 100})).json()["data"]
    subjects = {r.subject for r in rows.values()} | {"Re: " + r.subject for r in rows.values()}
    assert not [m for m in listed if m.get("subject") in subjects]

    # the activity API: A's sends (its thread and its answer both landed in B's Junk and were rescued)
    r = await tenant.client.get(f"/v1/email-accounts/{a.id}/warmup/activity", params={"days": 2})
    assert r.status_code == 200, r.text
    days = r.json()["days"]
    assert len(days) == 2
    totals_a = {k: sum(d[k] for d in days) for k in days[0] if k != "day"}
    assert totals_a == {
        "sent": 2,
        "landed_inbox": 0,
        "landed_junk": 2,
        "rescued": 2,
        "replied": 1,
        "received": 2,
        "received_in_junk": 0,
    }
    r = await tenant.client.get(f"/v1/email-accounts/{b.id}/warmup/activity")
    days = r.json()["days"]
    assert (
        len(days) == 7 and sum(d["received_in_junk"] for d in days) == 2 and sum(d["landed_inbox"] for d in days) == 2
    )
    mail_world.junk_for.discard(b.email)


async def test_the_worker_jobs_run_the_exchange(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: Any,
    vault: Any,
    settings: Any,
    app_state: Any,
    make_runner: RunnerFactory,
) -> None:
    """The cron jobs as the worker runs them (``warmup.tasks``, on the worker's resources)."""
    from nimbus_api.sending.mx import MxChecker
    from nimbus_api.smtp.pool import SmtpPool
    from nimbus_api.warmup import tasks
    from nimbus_api.worker.context import WorkerResources

    a, b = await _pair(tenant, sessionmaker, warmup_daily_limit=1)
    net = app_state.verifier.net
    ctx: dict[str, Any] = {
        "nimbus": WorkerResources(
            settings=settings.model_copy(
                update={
                    "warmup_window_start_hour": 0,
                    "warmup_window_end_hour": 24,
                    "warmup_reply_share": 0.0,
                    "warmup_flag_share": 0.0,  # the flag is the seed's decision: none here, so the test is exact
                }
            ),
            engine=engine,
            sessionmaker=sessionmaker,
            vault=vault,
            pool=SmtpPool(net),
            pacer=None,
            mx=MxChecker(net.resolver),
            worker_id=f"test-{secrets.token_hex(3)}",
        )
    }
    runner = make_runner()
    await runner.lease_round()
    await _sync(runner, a.id, b.id)
    assert await tasks.warmup_plan(ctx) == 2
    assert await tasks.warmup_plan(ctx) == 0
    async with sessionmaker() as session, session.begin():  # due now rather than later today
        await session.execute(
            text("UPDATE warmup_messages SET send_at = now() WHERE state = 'planned' AND sender_id IN (:a, :b)"),
            {"a": a.id, "b": b.id},
        )
    assert await tasks.warmup_send(ctx) == {"sent": 2}
    await _sync(runner, a.id, b.id)
    assert await tasks.warmup_receive(ctx) == 2
    rows = await _rows(sessionmaker, a.id, b.id)
    assert len(rows) == 2 and all(r.state == "sent" and r.landed == "inbox" and r.handled_at for r in rows)
    assert not any(r.replied for r in rows)  # reply share 0
    assert _flags(mail_world, a.email, "INBOX")[next(r for r in rows if r.recipient_id == a.id).message_id_header] == {
        "\\Seen"
    }
