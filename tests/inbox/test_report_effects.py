"""Bounce reports, delay warnings, complaints and auto-replies read from the inbox's real mailbox, and what
each changes: counted once, suppressed when the address is bad, nothing for a delay."""

from __future__ import annotations

from sqlalchemy import func, select, update

from nimbus_api.models import AccountDailyUsage, Campaign, EmailAccount, Suppression
from tests.inbox.conftest import Loop
from tests.mailworld.ooo_messages import exchange_ooo


async def _usage(loop: Loop) -> tuple[int, int]:
    async with loop.sessionmaker() as session:
        row = (
            await session.execute(
                select(func.sum(AccountDailyUsage.bounces), func.sum(AccountDailyUsage.complaints)).where(
                    AccountDailyUsage.account_id == loop.inbox_id
                )
            )
        ).one()
        return int(row[0] or 0), int(row[1] or 0)


async def _suppressed(loop: Loop, email: str) -> str | None:
    async with loop.sessionmaker() as session:
        return await session.scalar(
            select(Suppression.reason).where(
                Suppression.workspace_id == loop.tenant.workspace_id, Suppression.email == email.lower()
            )
        )


async def _account(loop: Loop) -> EmailAccount:
    async with loop.sessionmaker() as session:
        return await session.get_one(EmailAccount, loop.inbox_id)


async def test_a_hard_bounce_suppresses_and_counts_once(loop: Loop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    report = loop.dsn(grace)
    loop.deliver(report)
    loop.deliver(report, folder="Junk")  # the same report twice (a filter copied it)
    await loop.sync()
    rows = await loop.inbound()
    assert [r.kind for r in rows] == ["bounce"]
    assert rows[0].match_method == "message_id" and rows[0].sent_message_id == loop.sent[grace].id
    [message, *_] = await loop.messages(grace)
    assert (message.state, message.reply_enhanced, message.error_code) == ("bounced", "5.1.1", "bounce.userunknown")
    enrollment = await loop.enrollment(grace)
    assert enrollment.status == "bounced"
    assert await _suppressed(loop, grace) == "hard_bounce"
    [bounced] = await loop.events("message.bounced")
    assert (bounced["kind"], bounced["reason"], bounced["enhanced_code"]) == ("hard", "userunknown", "5.1.1")
    assert [e["email"] for e in await loop.events("enrollment.bounced")] == [grace]
    assert [e["email"] for e in await loop.events("contact.suppressed")] == [grace]
    assert await _usage(loop) == (1, 0)
    account = await _account(loop)
    assert round(account.bounce_rate_7d, 2) == round(100 / 3, 2)  # 1 bounce over 3 sends

    # a second report about the same message (another relay's) is stored but counts nothing more
    loop.deliver(loop.dsn(grace, diagnostic="smtp; 550 5.1.1 user unknown (second relay)"))
    await loop.sync()
    assert len(await loop.inbound()) == 2
    assert len(await loop.events("message.bounced")) == 1 and await _usage(loop) == (1, 0)


async def test_a_permanent_refusal_for_policy_bounces_the_message_but_keeps_the_address(loop: Loop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    loop.deliver(loop.dsn(grace, status="5.7.1", diagnostic="smtp; 554 5.7.1 Message rejected as spam"))
    await loop.sync()
    [message, *_] = await loop.messages(grace)
    assert message.state == "bounced"
    assert (await loop.enrollment(grace)).status == "active"
    assert await _suppressed(loop, grace) is None
    [bounced] = await loop.events("message.bounced")
    assert bounced["kind"] == "soft" and bounced["reason"] != "userunknown"
    assert await _usage(loop) == (1, 0)  # a permanent bounce all the same: it counts toward the rates


async def test_a_delay_warning_counts_nothing(loop: Loop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    loop.deliver(loop.dsn(grace, status="4.4.1", action="delayed", diagnostic="smtp; 451 4.4.1 try again later"))
    await loop.sync()
    [row] = await loop.inbound()
    assert row.kind == "delivery_report" and row.sent_message_id == loop.sent[grace].id
    [message, *_] = await loop.messages(grace)
    assert message.state == "sent" and (await loop.enrollment(grace)).status == "active"
    assert await loop.events("message.bounced") == [] and await _usage(loop) == (0, 0)
    assert (await _account(loop)).bounce_rate_7d == 0


async def test_a_complaint_suppresses_and_stops(loop: Loop) -> None:
    await loop.send_step()
    grace = loop.contacts[0]
    loop.deliver(loop.complaint(grace))
    await loop.sync()
    [row] = await loop.inbound()
    assert row.kind == "complaint" and row.sent_message_id == loop.sent[grace].id
    enrollment = await loop.enrollment(grace)
    assert (enrollment.status, enrollment.stop_reason) == ("stopped", "complaint")
    assert await _suppressed(loop, grace) == "complaint"
    [complained] = await loop.events("message.complained")
    assert complained["feedback_type"] == "abuse" and complained["email"] == grace
    assert await _usage(loop) == (0, 1)
    assert round((await _account(loop)).complaint_rate_7d, 2) == round(100 / 3, 2)


async def test_an_auto_reply_is_recorded_and_the_sequence_goes_on_unless_the_campaign_says_stop(loop: Loop) -> None:
    await loop.send_step()
    grace, other = loop.contacts[0], loop.contacts[1]
    ooo = exchange_ooo(
        "de",
        from_addr=grace,
        to_addr=loop.inbox_email,
        subject="Hello Grace",
        in_reply_to=loop.sent[grace].message_id_header,
    )
    loop.deliver(ooo)
    await loop.sync()
    [row] = await loop.inbound()
    assert row.kind == "auto_reply" and row.enrollment_id == loop.sent[grace].enrollment_id
    enrollment = await loop.enrollment(grace)
    assert enrollment.status == "active" and enrollment.auto_replied_at is not None and enrollment.replied_at is None
    assert [e["email"] for e in await loop.events("enrollment.auto_replied")] == [grace]
    assert await loop.events("enrollment.replied") == []

    async with loop.sessionmaker() as session, session.begin():
        await session.execute(update(Campaign).where(Campaign.id == loop.campaign_id).values(stop_on_auto_reply=True))
    loop.deliver(
        exchange_ooo(
            "fr",
            from_addr=other,
            to_addr=loop.inbox_email,
            subject="Hello Grace",
            in_reply_to=loop.sent[other].message_id_header,
        )
    )
    await loop.sync()
    stopped = await loop.enrollment(other)
    assert (stopped.status, stopped.stop_reason) == ("stopped", "auto_reply")
