"""Cooldown through the real loop: step 1 sent over SMTP, bounce reports and a complaint delivered into
the inbox's Dovecot mailbox and read by the sync; a burst of hard bounces or one complaint sets
``cooldown_until``, visible through the API, and applying the same burst again does not extend it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from nimbus_api.kit.db import utcnow
from nimbus_api.models import AccountEvent, EmailAccount, Message
from nimbus_api.stages.cooldown import CooldownRules, after_hard_bounce
from tests.inbox.conftest import Loop, campaigns, deps, loop, make_loop, make_runner, pool

__all__ = ["campaigns", "deps", "loop", "make_loop", "make_runner", "pool"]


async def _account(loop: Loop) -> EmailAccount:
    async with loop.sessionmaker() as session:
        return await session.get_one(EmailAccount, loop.inbox_id)


async def _cooldown_events(loop: Loop) -> list[dict[str, object]]:
    async with loop.sessionmaker() as session:
        rows = await session.scalars(
            select(AccountEvent)
            .where(AccountEvent.account_id == loop.inbox_id, AccountEvent.kind == "cooldown")
            .order_by(AccountEvent.id)
        )
        return [e.detail | {"actor": e.actor} for e in rows]


async def test_a_burst_of_hard_bounces_cools_the_inbox_down(loop: Loop) -> None:
    await loop.send_step()
    first, second, third = loop.contacts
    loop.deliver(loop.dsn(first))
    loop.deliver(loop.dsn(second))
    await loop.sync()
    assert (await _account(loop)).cooldown_until is None  # two hard bounces: under the burst of 3
    loop.deliver(loop.dsn(third))
    await loop.sync()

    async with loop.sessionmaker() as session:
        bounced = list(await session.scalars(select(Message.bounced_at).where(Message.campaign_id == loop.campaign_id)))
    latest = max(b for b in bounced if b is not None)
    account = await _account(loop)
    assert account.cooldown_until == latest + timedelta(minutes=720)
    [event] = await _cooldown_events(loop)
    assert (event["reason"], event["hard_bounces"], event["actor"], event["from"]) == (
        "bounce_burst",
        3,
        "platform",
        None,
    )

    # the clock is visible on the account and on its warmup resource
    body = (await loop.tenant.client.get(f"/v1/email-accounts/{loop.inbox_id}")).json()
    assert body["cooldown_until"] is not None
    warmup = (await loop.tenant.client.get(f"/v1/email-accounts/{loop.inbox_id}/warmup")).json()
    assert warmup["in_cooldown"] is True and warmup["cooldown_until"] == body["cooldown_until"]

    # the same burst applied again (a re-run, a later call in the same burst) moves nothing
    async with loop.sessionmaker() as session, session.begin():
        assert await after_hard_bounce(session, loop.inbox_id, utcnow(), CooldownRules()) is None
    assert (await _account(loop)).cooldown_until == account.cooldown_until
    assert len(await _cooldown_events(loop)) == 1
    # ... and once the burst's bounces are older than the window, a check finds no burst at all
    async with loop.sessionmaker() as session, session.begin():
        later = latest + timedelta(minutes=61)
        assert await after_hard_bounce(session, loop.inbox_id, later, CooldownRules()) is None


async def test_a_soft_bounce_does_not_count_toward_a_burst(make_loop: object) -> None:
    loop: Loop = await make_loop(3)  # type: ignore[operator]
    await loop.send_step()
    first, second, third = loop.contacts
    loop.deliver(loop.dsn(first))
    loop.deliver(loop.dsn(second))
    full = "smtp; 552 5.2.2 <{rcpt}>: Mailbox full"
    loop.deliver(loop.dsn(third, status="5.2.2", diagnostic=full))
    await loop.sync()
    codes = {c: (await loop.messages(c))[0].error_code for c in loop.contacts}
    assert codes == {first: "bounce.userunknown", second: "bounce.userunknown", third: "bounce.mailboxfull"}
    assert (await _account(loop)).cooldown_until is None


async def test_a_complaint_cools_the_inbox_down(loop: Loop) -> None:
    await loop.send_step()
    before = utcnow()
    loop.deliver(loop.complaint(loop.contacts[0]))
    await loop.sync()
    account = await _account(loop)
    assert account.cooldown_until is not None
    assert before + timedelta(minutes=1440) <= account.cooldown_until <= utcnow() + timedelta(minutes=1440)
    [event] = await _cooldown_events(loop)
    assert (event["reason"], event["actor"]) == ("complaint", "platform")
    # the rotation skips the inbox now: nothing more is picked for the campaign
    r = await loop.tenant.client.get(f"/v1/campaigns/{loop.campaign_id}/accounts")
    [entry] = r.json()["data"]
    assert (entry["eligible"], entry["reason"]) == (False, "cooldown")
