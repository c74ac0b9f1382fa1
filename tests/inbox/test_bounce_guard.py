"""The bounce guard through the real loop: sends over SMTP, bounce reports read from Dovecot. Below the
minimum sample nothing happens; over the threshold the inbox leaves that campaign once, its queued mail
goes to the pool's other inboxes, it sends nothing more for that campaign; a pool left empty pauses the
campaign once; re-enabling restarts the count."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from nimbus_api.campaigns import bounce_guard
from nimbus_api.kit.db import utcnow
from nimbus_api.models import Campaign, CampaignAccount, EmailAccount, Enrollment, Message
from nimbus_api.sending.sender import run_inbox
from tests.inbox.conftest import Loop, LoopFactory

THRESHOLD = 5.0  # percent; the minimum sample is the default, 20


async def _member(loop: Loop, account_id: object | None = None) -> CampaignAccount:
    async with loop.sessionmaker() as session:
        return await session.get_one(CampaignAccount, (loop.campaign_id, account_id or loop.inbox_id))


async def _second_inbox(loop: Loop) -> object:
    inbox = await loop.campaigns.inbox()  # SMTP only: it sends, it is not read
    async with loop.sessionmaker() as session, session.begin():
        session.add(CampaignAccount(campaign_id=loop.campaign_id, account_id=inbox))
        (await session.get_one(EmailAccount, inbox)).daily_send_limit = 1000
    return inbox


async def _bounce(loop: Loop, contacts: list[str]) -> None:
    for contact in contacts:
        loop.deliver(loop.dsn(contact))
    await loop.sync()


async def test_below_the_minimum_sample_nothing_is_disabled(make_loop: LoopFactory) -> None:
    loop = await make_loop(19, bounce_rate_threshold=THRESHOLD)
    await loop.send_step()
    assert len(loop.sent) == 19
    await _bounce(loop, loop.contacts[:5])  # 26 %, but 19 transactions < 20
    assert len(await loop.events("message.bounced")) == 5
    assert (await _member(loop)).disabled_at is None
    assert await loop.events("account.disabled") == []


async def test_over_the_threshold_the_inbox_leaves_the_campaign_once(make_loop: LoopFactory) -> None:
    loop = await make_loop(40, bounce_rate_threshold=THRESHOLD)
    await loop.send_step()
    assert len(loop.sent) == 40
    other = await _second_inbox(loop)
    # ten follow-ups due: threaded, they are queued on the inbox that sent step 1
    waiting = loop.contacts[30:40]
    async with loop.sessionmaker() as session, session.begin():
        await session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_([loop.sent[c].enrollment_id for c in waiting]))
            .values(next_send_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await loop.campaigns.dispatch(loop.campaign_id)
    queued = [m for m in await loop.campaigns.messages(loop.campaign_id) if m.step == 1]
    assert len(queued) == 10 and {m.account_id for m in queued} == {loop.inbox_id}

    await _bounce(loop, loop.contacts[:2])  # 2 / 40 = 5 %: not over
    assert (await _member(loop)).disabled_at is None
    await _bounce(loop, loop.contacts[2:3])  # 3 / 40 = 7.5 %
    member = await _member(loop)
    assert member.disabled_at is not None and member.disabled_reason == "bounce_rate"
    assert member.disabled_detail is not None
    assert (member.disabled_detail["bounces"], member.disabled_detail["sends"]) == (3, 40)
    [disabled] = await loop.events("account.disabled")
    assert disabled["by"] == "bounce_guard" and disabled["campaign_id"] == str(loop.campaign_id)
    assert (disabled["bounce_rate"], disabled["bounces"], disabled["sends"], disabled["threshold"]) == (7.5, 3, 40, 5.0)
    assert await loop.events("campaign.paused") == []  # the other inbox is still in the pool

    # its queued follow-ups went back to the dispatcher, which places them on the other inbox
    messages = await loop.campaigns.messages(loop.campaign_id)
    assert [m for m in messages if m.step == 1] == []
    await loop.campaigns.dispatch(loop.campaign_id)
    moved = [m for m in await loop.campaigns.messages(loop.campaign_id) if m.step == 1]
    assert len(moved) == 10 and {m.account_id for m in moved} == {other}
    # and it opens no SMTP connection for this campaign any more
    before = len(loop.world.smtp.messages)
    opened = loop.deps.pool.metrics.connections_opened
    report = await run_inbox(loop.deps, loop.inbox_id, max_seconds=5)
    assert sum(report.outcomes.values()) == 0 and loop.deps.pool.metrics.connections_opened == opened
    await run_inbox(loop.deps, other, max_seconds=20)  # type: ignore[arg-type]
    senders = {env.mail_from for env in loop.world.smtp.messages[before:]}
    assert loop.inbox_email not in senders and len(loop.world.smtp.messages) - before == 10

    # more bounces of that inbox in that campaign change nothing more
    await _bounce(loop, loop.contacts[3:5])
    assert len(await loop.events("account.disabled")) == 1

    # re-enabled through the API: back in rotation, its count restarted
    r = await loop.tenant.client.post(f"/v1/campaigns/{loop.campaign_id}/accounts/{loop.inbox_id}/reenable")
    assert r.status_code == 200, r.text
    assert r.json()["bounce_guard"]["disabled_at"] is None
    # the burst of hard bounces also put the inbox in cooldown (``stages.cooldown``): only that holds it now
    assert (r.json()["eligible"], r.json()["reason"]) == (False, "cooldown")
    assert r.json()["bounce_guard"]["counts_since"] is not None
    await _bounce(loop, loop.contacts[5:6])  # an old message bouncing now: 1 / 1, but under the sample
    assert (await _member(loop)).disabled_at is None


async def test_a_pool_left_empty_pauses_the_campaign_once(make_loop: LoopFactory) -> None:
    loop = await make_loop(20, bounce_rate_threshold=THRESHOLD)
    await loop.send_step()
    async with loop.sessionmaker() as session, session.begin():
        await session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_([loop.sent[c].enrollment_id for c in loop.contacts[10:]]))
            .values(next_send_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await loop.campaigns.dispatch(loop.campaign_id)
    await _bounce(loop, loop.contacts[:2])  # 2 / 20 = 10 %
    async with loop.sessionmaker() as session:
        campaign = await session.get_one(Campaign, loop.campaign_id)
        waiting = list(
            await session.scalars(
                select(Enrollment).where(Enrollment.campaign_id == loop.campaign_id, Enrollment.status == "active")
            )
        )
    assert (campaign.status, campaign.paused_reason) == ("paused", "all_accounts_disabled")
    [paused] = await loop.events("campaign.paused")
    assert paused["reason"] == "all_accounts_disabled"
    # nothing queued is lost: the ten queued follow-ups wait, due, on no inbox, for the campaign to resume
    # (the other active enrollments keep their time, on no inbox either)
    now = datetime.now(UTC)
    assert sum(1 for e in waiting if e.next_send_at is not None and e.next_send_at <= now) == 10
    assert all(e.account_id is None and e.next_send_at is not None for e in waiting) and len(waiting) == 18
    assert [m for m in await loop.campaigns.messages(loop.campaign_id) if m.step == 1] == []
    await _bounce(loop, loop.contacts[2:4])
    assert len(await loop.events("campaign.paused")) == 1


async def test_concurrent_bounces_disable_once(make_loop: LoopFactory) -> None:
    """Four transactions recording a bounce of the same inbox and campaign at the same moment (four
    workers): the pool row's lock orders them and exactly one disables."""
    loop = await make_loop(20, bounce_rate_threshold=THRESHOLD)
    await loop.send_step()
    async with loop.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.campaign_id == loop.campaign_id, Message.to_email.in_(loop.contacts[:4]))
            .values(state="bounced")
        )
    gate = asyncio.Event()

    async def worker() -> bool:
        async with loop.sessionmaker() as session:
            await gate.wait()
            disabled = await bounce_guard.check(session, loop.campaign_id, loop.inbox_id, min_sample=20, now=utcnow())
            await session.commit()
            return disabled

    tasks = [asyncio.create_task(worker()) for _ in range(4)]
    await asyncio.sleep(0.1)
    gate.set()
    assert sorted(await asyncio.gather(*tasks)) == [False, False, False, True]
    assert len(await loop.events("account.disabled")) == 1
    assert len(await loop.events("campaign.paused")) == 1
