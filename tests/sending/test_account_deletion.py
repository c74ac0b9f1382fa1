"""Deleting an inbox loses none of the sends it had not made: they go to the rest of the campaign's pool
(``sending.sweeper.hand_back_orphans``), threaded follow-ups still answering their step 1."""

from __future__ import annotations

import email
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from email import policy

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Enrollment, Message
from nimbus_api.sending.sender import SenderDeps, run_inbox
from nimbus_api.sending.sweeper import sweep
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld


async def _enrollments(sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID) -> list[Enrollment]:
    async with sm() as session:
        return list(await session.scalars(select(Enrollment).where(Enrollment.campaign_id == campaign_id)))


async def test_a_deleted_inbox_hands_its_unsent_messages_to_the_rest_of_the_pool(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    gone, kept = await campaigns.inbox(), await campaigns.inbox()
    recipients = [f"del{i}-{secrets.token_hex(3)}@example.org" for i in range(4)]
    campaign_id = await campaigns.campaign([gone, kept], recipients)
    await campaigns.dispatch(campaign_id)
    queued = await campaigns.messages(campaign_id)
    on_gone = [m for m in queued if m.account_id == gone]
    assert on_gone and len(queued) == 4
    retry = on_gone[0]
    async with sessionmaker() as session, session.begin():  # one of them was refused for now (4xx) once
        row = await session.get_one(Message, retry.id)
        row.state, row.attempts, row.retry_at = "deferred", 1, datetime.now(UTC) + timedelta(minutes=5)

    r = await campaigns.tenant.client.delete(f"/v1/email-accounts/{gone}")
    assert r.status_code == 204, r.text

    left = await campaigns.messages(campaign_id)
    assert {m.id for m in left} == {m.id for m in queued if m.account_id == kept}  # the gone inbox's are gone
    handed = {m.enrollment_id for m in on_gone}
    for enrollment in await _enrollments(sessionmaker, campaign_id):
        if enrollment.id in handed:
            assert enrollment.status == "active" and enrollment.next_step == 0
            assert enrollment.next_send_at is not None and enrollment.next_send_at <= datetime.now(UTC)
            assert enrollment.account_id is None

    await campaigns.dispatch(campaign_id)
    again = await campaigns.messages(campaign_id)
    assert len(again) == 4 and {m.account_id for m in again} == {kept}
    before = len(mail_world.smtp.messages)
    report = await run_inbox(deps, kept, max_seconds=20)
    assert report.outcomes["sent"] == 4
    delivered = mail_world.smtp.messages[before:]
    assert sorted(rcpt for env in delivered for rcpt in env.rcpt_tos) == sorted(recipients)  # each once


async def test_a_follow_up_of_a_deleted_inbox_goes_out_threaded_from_another(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    gone, kept = await campaigns.inbox(), await campaigns.inbox()
    address = f"thread-{secrets.token_hex(3)}@example.org"
    campaign_id = await campaigns.campaign([gone], [address])
    await campaigns.dispatch(campaign_id)
    assert (await run_inbox(deps, gone, max_seconds=20)).outcomes["sent"] == 1
    (first,) = await campaigns.messages(campaign_id)
    (enrollment,) = await _enrollments(sessionmaker, campaign_id)
    async with sessionmaker() as session, session.begin():  # step 2 is due; the pool gains an inbox
        row = await session.get_one(Enrollment, enrollment.id)
        row.next_send_at = datetime.now(UTC) - timedelta(seconds=1)
    r = await campaigns.tenant.client.post(f"/v1/campaigns/{campaign_id}/accounts", json={"account_ids": [str(kept)]})
    assert r.status_code in (200, 201, 204), r.text
    await campaigns.dispatch(campaign_id)
    follow_up = next(m for m in await campaigns.messages(campaign_id) if m.step == 1)
    assert follow_up.account_id == gone and follow_up.state == "queued"  # a follow-up waits for its inbox

    assert (await campaigns.tenant.client.delete(f"/v1/email-accounts/{gone}")).status_code == 204
    await campaigns.dispatch(campaign_id)
    follow_up = next(m for m in await campaigns.messages(campaign_id) if m.step == 1)
    assert follow_up.account_id == kept
    assert follow_up.in_reply_to == first.message_id_header and follow_up.subject.startswith("Re: ")
    (enrollment,) = await _enrollments(sessionmaker, campaign_id)
    assert enrollment.account_id == kept  # the thread goes on from the inbox that now carries it
    before = len(mail_world.smtp.messages)
    assert (await run_inbox(deps, kept, max_seconds=20)).outcomes["sent"] == 1
    parsed = email.message_from_bytes(mail_world.smtp.messages[before].original_content or b"", policy=policy.default)
    assert parsed["In-Reply-To"] == first.message_id_header
    assert first.message_id_header in parsed["References"]


async def test_the_sweeper_hands_back_what_a_sender_recorded_after_its_inbox_was_deleted(
    campaigns: Campaigns, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A chunk in flight when the inbox is deleted is recorded by its sender; a send refused for now
    (``deferred``) then has no inbox: the sweeper hands it back."""
    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], [f"late-{secrets.token_hex(3)}@example.org"])
    await campaigns.dispatch(campaign_id)
    (message,) = await campaigns.messages(campaign_id)
    async with sessionmaker() as session, session.begin():
        row = await session.get_one(Message, message.id)
        row.state, row.attempts, row.account_id = "deferred", 1, None
        row.retry_at = datetime.now(UTC) + timedelta(minutes=5)
    async with sessionmaker() as session, session.begin():
        report = await sweep(session, datetime.now(UTC))
    assert report.handed_back >= 1
    assert await campaigns.messages(campaign_id) == []
    (enrollment,) = await _enrollments(sessionmaker, campaign_id)
    assert enrollment.status == "active" and enrollment.next_send_at is not None
    assert enrollment.next_send_at <= datetime.now(UTC)
    assert enrollment.account_id == inbox  # its thread's inbox still exists: the hand-back leaves it
