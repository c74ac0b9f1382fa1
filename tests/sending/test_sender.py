"""The sender end to end: real connected inboxes (verified through the API), rows for the campaign,
the dispatcher, the pooled sender against the mail world's SMTP server, and the sweeper."""

from __future__ import annotations

import dataclasses
import email
import secrets
from datetime import UTC, datetime, timedelta
from email import policy

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import (
    CampaignStep,
    Contact,
    CredentialAccess,
    EmailAccount,
    Enrollment,
    Message,
    SendAttempt,
    Suppression,
)
from nimbus_api.sending.sender import SenderDeps, SendReport, run_inbox
from nimbus_api.sending.sweeper import sweep
from nimbus_api.smtp.pool import SmtpPool
from tests.sending.conftest import PUBLIC, Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.smtp_server import TestSmtpServer


async def test_queued_messages_are_sent_with_correct_mime_and_the_sequence_advances(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inboxes = [await campaigns.inbox(), await campaigns.inbox()]
    recipients = [f"lead{i}-{secrets.token_hex(3)}@example.org" for i in range(4)]
    campaign_id = await campaigns.campaign(inboxes, recipients)
    await campaigns.dispatch(campaign_id)
    before = len(mail_world.smtp.messages)
    opened_before = deps.pool.metrics.connections_opened
    reports = [await run_inbox(deps, inbox, max_seconds=20) for inbox in inboxes]
    states = [(m.error_code, m.reply_text) for m in await campaigns.messages(campaign_id)]
    assert sum(r.outcomes["sent"] for r in reports) == 4, states
    assert deps.pool.metrics.connections_opened - opened_before == 2  # one per inbox, reused
    delivered = mail_world.smtp.messages[before:]
    assert sorted(rcpt for env in delivered for rcpt in env.rcpt_tos) == sorted(recipients)
    messages = await campaigns.messages(campaign_id)
    assert {m.state for m in messages} == {"sent"}
    assert all(m.reply_code == 250 for m in messages)
    parsed = email.message_from_bytes(delivered[0].original_content or b"", policy=policy.default)
    assert parsed["Subject"] == "Hello Grace"
    assert parsed["From"].addresses[0].display_name == "Ada"
    assert parsed["Message-ID"] in {m.message_id_header for m in messages}
    assert parsed["List-Unsubscribe"].startswith("<mailto:")
    assert f"<{PUBLIC}/u/" in parsed["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    async with sessionmaker() as session:
        enrollments = list(await session.scalars(select(Enrollment).where(Enrollment.campaign_id == campaign_id)))
        attempts = list(
            await session.scalars(
                select(SendAttempt.outcome).where(SendAttempt.message_id.in_([m.id for m in messages]))
            )
        )
        audits = await session.scalar(
            select(func.count())
            .select_from(CredentialAccess)
            .where(CredentialAccess.account_id.in_(inboxes), CredentialAccess.purpose == "send")
        )
    assert all(e.next_step == 1 and e.status == "active" for e in enrollments)
    assert all(e.next_send_at and e.next_send_at > datetime.now(UTC) + timedelta(minutes=59) for e in enrollments)
    assert attempts == []  # the delivering attempt is the message row (its reply, above); no attempt rows
    assert audits == 2  # one decrypt per connection opened (one per inbox), not per message


async def test_hard_bounce_suppresses_and_transient_defers(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        login = (await session.get_one(EmailAccount, inbox)).smtp_username
    assert login
    for reply, state in (("550 5.1.1 No such user", "failed"), ("450 4.2.1 Mailbox busy", "deferred")):
        server = TestSmtpServer(
            users={login: "s3cret"}, tls_context=mail_world.certs.server_context(), replies={"RCPT": reply}
        )
        await server.start()
        try:
            await campaigns.point_at(inbox, server.port)
            address = f"x-{secrets.token_hex(3)}@example.org"
            campaign_id = await campaigns.campaign([inbox], [address])
            await campaigns.dispatch(campaign_id)
            await run_inbox(deps, inbox, max_seconds=10)
            (message,) = await campaigns.messages(campaign_id)
            assert message.state == state
            async with sessionmaker() as session:
                suppressed = await session.scalar(
                    select(Suppression.reason).where(Suppression.email == address.lower())
                )
                enrollment = await session.get_one(Enrollment, message.enrollment_id)
            if state == "failed":
                assert suppressed == "hard_bounce"
                assert enrollment.status == "bounced"
                assert message.reply_enhanced == "5.1.1"
            else:
                assert suppressed is None
                assert message.retry_at and message.retry_at > datetime.now(UTC)
                assert enrollment.status == "active"
        finally:
            await server.stop()


async def test_credential_failure_pauses_the_inbox_and_hands_messages_back(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        login = (await session.get_one(EmailAccount, inbox)).smtp_username
    assert login and mail_world.smtp.users is not None
    campaign_id = await campaigns.campaign([inbox], [f"y{i}@example.org" for i in range(3)])
    await campaigns.dispatch(campaign_id)
    mail_world.smtp.users[login] = "changed-at-the-provider"
    report = await run_inbox(deps, inbox, max_seconds=10)
    assert report.stopped_reason == "smtp.auth_failed"
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, inbox)
        enrollments = list(await session.scalars(select(Enrollment).where(Enrollment.campaign_id == campaign_id)))
    assert account.disabled_reason == "smtp.auth_failed"
    assert await campaigns.messages(campaign_id) == []  # handed back: nothing sent, nothing blamed
    assert all(e.account_id is None and e.status == "active" and e.next_send_at for e in enrollments)


async def test_sweeper_marks_expired_leases_unknown_and_never_requeues_them(
    campaigns: Campaigns, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], ["s1@example.org", "s2@example.org"])
    await campaigns.dispatch(campaign_id)
    past = datetime.now(UTC) - timedelta(minutes=1)
    first, second = await campaigns.messages(campaign_id)
    async with sessionmaker() as session, session.begin():
        row = await session.get_one(Message, first.id)  # a dead worker's lease: its attempt had begun
        row.state, row.lease_expires_at, row.lease_owner, row.attempts = "leased", past, "dead-worker", 1
    async with sessionmaker() as session, session.begin():
        report = await sweep(session, datetime.now(UTC))
    assert report.unknown >= 1
    assert inbox in report.recovered_inboxes
    assert inbox in report.inboxes_with_work  # the second message is still due
    async with sessionmaker() as session:
        lost = await session.get_one(Message, first.id)
        assert (lost.state, lost.error_code) == ("unknown", "worker_lost")
        assert (await session.get_one(Message, second.id)).state == "queued"
        attempt = await session.scalar(select(SendAttempt).where(SendAttempt.message_id == first.id))
        assert attempt is not None and attempt.outcome == "unknown"
        enrollment = await session.get_one(Enrollment, lost.enrollment_id)
        assert (enrollment.status, enrollment.stop_reason) == ("failed", "delivery unknown")


async def test_reply_held_past_the_timeout_is_unknown_and_never_resent(
    campaigns: Campaigns,
    mail_world: MailWorld,
    settings: Settings,
    vault: Vault,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        login = (await session.get_one(EmailAccount, inbox)).smtp_username
    assert login
    server = TestSmtpServer(
        users={login: "s3cret"}, tls_context=mail_world.certs.server_context(), stall_after_dot=True
    )
    await server.start()
    try:
        async with sessionmaker() as session, session.begin():
            account = await session.get_one(EmailAccount, inbox)
            account.smtp_port, account.credentials_version = server.port, account.credentials_version + 1
        campaign_id = await campaigns.campaign([inbox], ["held@example.org"])
        await campaigns.dispatch(campaign_id)
        net = dataclasses.replace(build_net_context(settings), command_timeout=1.0)
        async with SmtpPool(net) as pool:
            deps = SenderDeps(sessionmaker=sessionmaker, vault=vault, pool=pool, pacer=None, public_url=PUBLIC)
            report = await run_inbox(deps, inbox, max_seconds=10)
            assert report.outcomes == {"unknown": 1}
            assert await run_inbox(deps, inbox, max_seconds=5) == SendReport()  # nothing left to resend
        (message,) = await campaigns.messages(campaign_id)
        assert message.state == "unknown"
        assert len(server.messages) <= 1  # taken at most once: never retried
    finally:
        await server.stop()


async def test_a_lease_counts_the_attempt_and_is_never_taken_twice(
    campaigns: Campaigns, deps: SenderDeps, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    from nimbus_api.sending.lease import lease

    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], ["late@example.org"])
    await campaigns.dispatch(campaign_id)
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        account = await session.get_one(EmailAccount, inbox)
        (row,) = await lease(session, account, owner="one", now=now, limit=10, lease_seconds=300)
        message_id = row.id
        assert (row.email, row.step, row.status, row.suppressed) == ("late@example.org", 0, "active", False)
        # a second worker at the same moment finds nothing (the row is leased, or locked until commit)
        async with sessionmaker() as other, other.begin():
            assert await lease(other, account, owner="two", now=now, limit=10, lease_seconds=300) == []
    async with sessionmaker() as session:
        row = await session.get_one(Message, message_id)
    assert (row.state, row.lease_owner, row.attempts) == ("leased", "one", 1)
    assert row.lease_expires_at is not None and row.lease_expires_at > now


async def test_a_retry_on_a_later_day_counts_against_that_days_budget(
    campaigns: Campaigns, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A send deferred past midnight gives back the day it was reserved on and takes a send of the day
    it goes out on; when that day is spent, it waits for the next one."""
    from nimbus_api.kit.db import utc_day
    from nimbus_api.models import AccountDailyUsage
    from nimbus_api.sending.lease import lease
    from nimbus_api.sending.record import Result, Work, record_one

    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], ["d1@example.org", "d2@example.org"])
    await campaigns.dispatch(campaign_id)
    first, second = sorted(await campaigns.messages(campaign_id), key=lambda m: m.created_at)
    today = first.budget_day
    assert today is not None and second.budget_day == today

    async def usage(day: object) -> int:
        async with sessionmaker() as session:
            row = await session.get(AccountDailyUsage, {"account_id": inbox, "day": day})
            return row.sends if row else 0

    assert await usage(today) == 2
    late = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23, minutes=58)
    async with sessionmaker() as session, session.begin():
        account = await session.get_one(EmailAccount, inbox)
        for message in (first, second):
            row = await session.get_one(Message, message.id)
            row.state, row.attempts = "leased", 2  # the second transient failure: retried in 5 minutes
            item = Work(row.id, row.enrollment_id, 0, row.to_email, row.budget_day, b"x")
            await record_one(session, account, Result(item, "transient"), late)
    async with sessionmaker() as session:
        rows = [await session.get_one(Message, m.id) for m in (first, second)]
    assert all(r.state == "deferred" and r.budget_day is None for r in rows)
    assert all(r.retry_at is not None and utc_day(r.retry_at) != today for r in rows)
    assert await usage(today) == 0  # given back: nothing went out on that day for them

    tomorrow = late + timedelta(minutes=10)
    async with sessionmaker() as session, session.begin():
        account = await session.get_one(EmailAccount, inbox)
        account.daily_send_limit = 1
    async with sessionmaker() as session, session.begin():
        account = await session.get_one(EmailAccount, inbox)
        leased = await lease(session, account, owner="w", now=tomorrow, limit=10, lease_seconds=60)
    assert [row.id for row in leased] == [first.id]  # one send left on the new day
    assert await usage(utc_day(tomorrow)) == 1
    async with sessionmaker() as session:
        waiting = await session.get_one(Message, second.id)
        assert waiting.state == "deferred" and waiting.budget_day is None
        assert waiting.retry_at == datetime.combine(
            utc_day(tomorrow) + timedelta(days=1), datetime.min.time(), tzinfo=UTC
        )
        assert (await session.get_one(Message, first.id)).budget_day == utc_day(tomorrow)


async def test_a_step_edited_while_the_campaign_runs_is_sent_as_edited(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The sender reads a step's templates once per process, by step id: an edit replaces the steps (new
    ids), so the next message renders the edited text, never the one read before."""
    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], [f"before-{secrets.token_hex(3)}@example.org"])
    await campaigns.dispatch(campaign_id)
    before = len(mail_world.smtp.messages)
    assert (await run_inbox(deps, inbox, max_seconds=10)).outcomes["sent"] == 1
    async with sessionmaker() as session, session.begin():
        old = list(await session.scalars(select(CampaignStep).where(CampaignStep.campaign_id == campaign_id)))
        for step in old:
            await session.delete(step)
        await session.flush()
        for step in old:
            session.add(
                CampaignStep(
                    campaign_id=campaign_id,
                    position=step.position,
                    delay_seconds=step.delay_seconds,
                    subject_template=step.subject_template,
                    text_template="Edited, {{ contact.first_name }}\nunsubscribe: {{ unsubscribe_url }}",
                    html_template=None,
                )
            )
        contact = Contact(workspace_id=campaigns.tenant.workspace_id, email=f"after-{secrets.token_hex(3)}@example.org")
        session.add(contact)
        await session.flush()
        session.add(
            Enrollment(
                workspace_id=campaigns.tenant.workspace_id,
                campaign_id=campaign_id,
                contact_id=contact.id,
                next_send_at=datetime.now(UTC) - timedelta(seconds=1),
                unsubscribe_token=secrets.token_urlsafe(24),
            )
        )
    await campaigns.dispatch(campaign_id)
    assert (await run_inbox(deps, inbox, max_seconds=10)).outcomes["sent"] == 1
    first, second = (
        email.message_from_bytes(m.original_content or b"", policy=policy.default)
        for m in mail_world.smtp.messages[before:]
    )
    assert first.get_content_type() == "multipart/alternative"
    assert "Hi Grace" in first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert second.get_content_type() == "text/plain"
    assert second.get_content().startswith("Edited, ")


async def test_the_password_is_decrypted_only_when_a_connection_logs_in(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Every decrypt is audited, so a sender woken again while its pooled connection is still logged in
    decrypts nothing; a run that must open a connection decrypts once."""
    inbox = await campaigns.inbox()

    async def audits() -> int:
        async with sessionmaker() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(CredentialAccess)
                .where(CredentialAccess.account_id == inbox, CredentialAccess.purpose == "send")
            )
        return count or 0

    async def send_one(sender_deps: SenderDeps) -> None:
        campaign_id = await campaigns.campaign([inbox], [f"lead-{secrets.token_hex(3)}@example.org"])
        await campaigns.dispatch(campaign_id)
        assert (await run_inbox(sender_deps, inbox, max_seconds=10)).outcomes["sent"] == 1

    opened, delivered = deps.pool.metrics.connections_opened, len(mail_world.smtp.messages)
    await send_one(deps)
    assert (deps.pool.metrics.connections_opened - opened, await audits()) == (1, 1)
    await send_one(deps)  # the pooled connection, still logged in
    assert (deps.pool.metrics.connections_opened - opened, await audits()) == (1, 1)
    assert (await run_inbox(deps, inbox, max_seconds=10)).outcomes == {}  # nothing due: no connection either
    assert await audits() == 1
    async with SmtpPool(deps.pool.net, idle_timeout=5) as fresh:  # a worker without that connection
        await send_one(dataclasses.replace(deps, pool=fresh))
        assert fresh.metrics.connections_opened == 1
    assert await audits() == 2
    assert len(mail_world.smtp.messages) - delivered == 3
