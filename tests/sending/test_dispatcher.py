"""Dispatch: due enrollments become queued messages on picked inboxes (rows set up directly; the SQL,
the templates and the DNS check are real)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Vault
from nimbus_api.models import (
    Campaign,
    CampaignAccount,
    CampaignStep,
    Contact,
    Domain,
    EmailAccount,
    Enrollment,
    Message,
    Suppression,
    Workspace,
)
from nimbus_api.sending.dispatcher import dispatch_campaign, in_window, next_window_start
from nimbus_api.sending.mx import MxChecker
from nimbus_api.workspaces import service as workspaces
from tests.servers.dns_server import make_zone
from tests.servers.mail_world import MailWorld

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday
PUBLIC = "https://nimbus.example"


class World:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> None:
        self.sm = sessionmaker
        self.workspace_id = workspace_id
        self.inboxes: list[uuid.UUID] = []

    async def build(self, *, inboxes: int = 2, steps: int = 2, **campaign: Any) -> None:
        async with self.sm() as session, session.begin():
            domain = Domain(workspace_id=self.workspace_id, name=f"{secrets.token_hex(4)}.example.test")
            session.add(domain)
            values: dict[str, Any] = {
                "workspace_id": self.workspace_id,
                "name": "launch",
                "type": "cold",
                "status": "active",
                "send_days": [0, 1, 2, 3, 4, 5, 6],
                "send_start": time(0, 0),
                "send_end": time(23, 59, 59),
            }
            values.update(campaign)
            c = Campaign(**values)
            session.add(c)
            await session.flush()
            self.campaign_id = c.id
            for position in range(steps):
                session.add(
                    CampaignStep(
                        campaign_id=c.id,
                        position=position,
                        delay_seconds=0 if position == 0 else 86400,
                        subject_template="Hello {{ contact.first_name }}",
                        text_template="Hi {{ contact.first_name }}, unsubscribe: {{ unsubscribe_url }}",
                        threaded=True,
                    )
                )
            for _ in range(inboxes):
                account = EmailAccount(
                    workspace_id=self.workspace_id,
                    domain_id=domain.id,
                    email=f"i-{secrets.token_hex(3)}@{domain.name}",
                    smtp_host="smtp.example.test",
                    smtp_port=587,
                    smtp_mode="starttls",
                    campaign_types=["cold", "nurture"],
                    current_stage=3,
                    overall_score=80.0,
                )
                session.add(account)
                await session.flush()
                session.add(CampaignAccount(campaign_id=c.id, account_id=account.id))
                self.inboxes.append(account.id)

    async def enroll(self, email: str, first_name: str = "Grace") -> uuid.UUID:
        async with self.sm() as session, session.begin():
            contact = Contact(workspace_id=self.workspace_id, email=email, first_name=first_name, fields={})
            session.add(contact)
            await session.flush()
            e = Enrollment(
                workspace_id=self.workspace_id,
                campaign_id=self.campaign_id,
                contact_id=contact.id,
                next_send_at=NOW - timedelta(minutes=1),
                unsubscribe_token=secrets.token_urlsafe(24),
            )
            session.add(e)
            await session.flush()
            return e.id

    async def dispatch(self, mx: MxChecker | None = None, now: datetime = NOW):  # type: ignore[no-untyped-def]
        async with self.sm() as session, session.begin():
            campaign = await session.get_one(Campaign, self.campaign_id)
            return await dispatch_campaign(session, campaign, now=now, public_url=PUBLIC, mx=mx)

    async def enrollment(self, enrollment_id: uuid.UUID) -> Enrollment:
        async with self.sm() as session:
            return await session.get_one(Enrollment, enrollment_id)

    async def messages(self) -> list[Message]:
        async with self.sm() as session:
            return list(
                await session.scalars(
                    select(Message).where(Message.campaign_id == self.campaign_id).order_by(Message.created_at)
                )
            )


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession], vault: Vault) -> World:
    async with sessionmaker() as session, session.begin():
        workspace = await workspaces.create_workspace(session, vault, f"disp-{secrets.token_hex(5)}")
    return World(sessionmaker, workspace.id)


async def test_due_enrollments_are_queued_across_the_pool(world: World) -> None:
    await world.build(inboxes=2)
    ids = [await world.enroll(f"c{i}@example.org", f"Name{i}") for i in range(4)]
    result = await world.dispatch()
    assert sum(result.queued.values()) == 4
    assert set(result.queued) == set(world.inboxes)
    assert sorted(result.queued.values()) == [2, 2]  # least recently used first: they alternate
    messages = await world.messages()
    assert {m.state for m in messages} == {"queued"}
    assert {m.subject for m in messages} == {f"Hello Name{i}" for i in range(4)}
    senders = {m.account_id for m in messages}
    async with world.sm() as session:
        domains = {(await session.get_one(EmailAccount, a)).email.rpartition("@")[2] for a in senders if a}
    assert all(m.message_id_header.rstrip(">").rpartition("@")[2] in domains for m in messages)
    for enrollment_id in ids:
        e = await world.enrollment(enrollment_id)
        assert e.next_send_at is None  # in flight
        assert e.account_id in world.inboxes
    again = await world.dispatch()
    assert sum(again.queued.values()) == 0  # nothing due twice


async def test_follow_up_is_threaded_through_the_first_inbox(world: World) -> None:
    await world.build(inboxes=3)
    enrollment_id = await world.enroll("thread@example.org")
    await world.dispatch()
    first = (await world.messages())[0]
    async with world.sm() as session, session.begin():
        e = await session.get_one(Enrollment, enrollment_id)
        e.next_step, e.next_send_at = 1, NOW
    result = await world.dispatch(now=NOW + timedelta(seconds=1))
    assert list(result.queued) == [first.account_id]
    follow = (await world.messages())[1]
    assert follow.subject == "Re: Hello Grace"
    assert follow.in_reply_to == first.message_id_header
    assert follow.account_id == first.account_id


async def test_suppressed_contacts_are_stopped_and_get_nothing(world: World) -> None:
    await world.build()
    enrollment_id = await world.enroll("Gone@Example.org")
    async with world.sm() as session, session.begin():
        session.add(Suppression(workspace_id=world.workspace_id, email="gone@example.org", reason="unsubscribed"))
    result = await world.dispatch()
    assert result.stopped == 1
    assert await world.messages() == []
    e = await world.enrollment(enrollment_id)
    assert (e.status, e.stop_reason) == ("stopped", "suppressed")


async def test_mx_check_bounces_without_smtp(world: World, mail_world: MailWorld) -> None:
    await world.build(verify_email_mx=True)
    mail_world.dns.add_zone(make_zone("nomx.test", '@ IN TXT "no mail here"'), "nomx.test")
    mail_world.dns.add_zone(make_zone("nullmx.test", "@ IN MX 0 ."), "nullmx.test")
    mail_world.dns.add_zone(make_zone("implicit.test", "@ IN A 192.0.2.1"), "implicit.test")
    bad = [await world.enroll(f"a@{d}") for d in ("nomx.test", "nullmx.test", "missing.nomx.test")]
    good = [await world.enroll("b@implicit.test"), await world.enroll("c@example.test")]
    result = await world.dispatch(mx=MxChecker(mail_world.dns.resolver()))
    assert result.bounced == 3
    assert sum(result.queued.values()) == 2
    for enrollment_id in bad:
        e = await world.enrollment(enrollment_id)
        assert (e.status, e.stop_reason) == ("bounced", "MX check failed at dispatch")
    assert {m.enrollment_id for m in await world.messages()} == set(good)


async def test_no_eligible_inbox_defers_and_outside_window_skips(world: World) -> None:
    await world.build(inboxes=1)
    async with world.sm() as session, session.begin():
        account = await session.get_one(EmailAccount, world.inboxes[0])
        account.current_stage = 1
    enrollment_id = await world.enroll("wait@example.org")
    result = await world.dispatch()
    assert result.deferred == 1
    assert (await world.enrollment(enrollment_id)).next_send_at == NOW + timedelta(minutes=5)

    async with world.sm() as session, session.begin():
        campaign = await session.get_one(Campaign, world.campaign_id)
        campaign.send_days = [0]  # Mondays only
    result = await world.dispatch(now=NOW + timedelta(hours=1))
    assert result.skipped_reason == "outside the sending window"


def test_window_in_the_campaign_time_zone() -> None:
    c = Campaign(timezone="America/New_York", send_days=[0, 1, 2, 3, 4], send_start=time(9), send_end=time(17))
    assert not in_window(c, NOW)  # 07:00 in New York
    assert not in_window(c, datetime(2026, 11, 24, 13, 59, tzinfo=UTC))
    assert in_window(c, datetime(2026, 11, 24, 14, 0, tzinfo=UTC))
    assert not in_window(c, datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    assert not in_window(c, saturday)
    assert next_window_start(c, saturday) == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


async def test_contact_data_that_breaks_a_subject_fails_that_enrollment_only(world: World) -> None:
    await world.build(inboxes=1)
    bad = await world.enroll("crlf@example.org", first_name="Grace\r\nBcc: victim@example.com")
    good = await world.enroll("fine@example.org")
    result = await world.dispatch()
    assert result.failed == 1
    assert sum(result.queued.values()) == 1
    e = await world.enrollment(bad)
    assert e.status == "failed"
    assert e.stop_reason and e.stop_reason.startswith("template:")
    assert [m.enrollment_id for m in await world.messages()] == [good]


async def test_monthly_quota_caps_what_is_queued(world: World) -> None:
    await world.build(inboxes=2)
    async with world.sm() as session, session.begin():
        workspace = await session.get_one(Workspace, world.workspace_id)
        workspace.monthly_send_quota = 3
    for i in range(5):
        await world.enroll(f"q{i}@example.org")
    first = await world.dispatch()
    assert sum(first.queued.values()) == 3
    second = await world.dispatch(now=NOW + timedelta(seconds=1))
    assert second.skipped_reason == "monthly send quota reached"
    assert len(await world.messages()) == 3


async def test_the_quota_counts_this_months_sends_and_what_is_on_its_way(world: World) -> None:
    await world.build(inboxes=1)
    async with world.sm() as session, session.begin():
        (await session.get_one(Workspace, world.workspace_id)).monthly_send_quota = 4
    for i in range(8):
        await world.enroll(f"m{i}@example.org")
    assert sum((await world.dispatch()).queued.values()) == 4
    last_month = datetime(NOW.year, NOW.month, 1, tzinfo=UTC) - timedelta(hours=1)
    outcomes = [
        ("sent", NOW),  # counts: sent this month
        ("sent", last_month),  # last month's quota, not this one's
        ("failed", None),  # never went out
        ("deferred", None),  # counts: on its way
    ]
    async with world.sm() as session, session.begin():
        messages = list(await session.scalars(select(Message).where(Message.campaign_id == world.campaign_id)))
        for message, (state, sent_at) in zip(messages, outcomes, strict=True):
            message.state, message.sent_at = state, sent_at
    # Two of four used: two more are queued, then the quota is reached.
    assert sum((await world.dispatch(now=NOW + timedelta(seconds=1))).queued.values()) == 2
    assert (await world.dispatch(now=NOW + timedelta(seconds=2))).skipped_reason == "monthly send quota reached"
    assert len(await world.messages()) == 6


async def test_a_deferral_records_why_per_inbox_and_waits_until_an_inbox_could_send(world: World) -> None:
    await world.build(inboxes=3)
    cooled, spent, sick = world.inboxes
    async with world.sm() as session, session.begin():
        (await session.get_one(EmailAccount, cooled)).cooldown_until = NOW + timedelta(hours=2)
        (await session.get_one(EmailAccount, spent)).daily_send_limit = 0
        (await session.get_one(EmailAccount, sick)).overall_score = 10.0
    enrollment_id = await world.enroll("later@example.org")
    result = await world.dispatch()
    assert result.deferred == 1 and not result.queued
    e = await world.enrollment(enrollment_id)
    assert e.next_send_at == NOW + timedelta(minutes=5)  # the unhealthy inbox may be fixed any time
    assert e.defer_reason and e.defer_reason.startswith("no inbox eligible:")
    for reason in ("cooldown", "budget_exhausted", "below_min_health"):
        assert reason in e.defer_reason
    async with world.sm() as session:
        deferral = (await session.get_one(Campaign, world.campaign_id)).last_deferral
    assert deferral is not None
    assert deferral["deferred"] == 1
    assert deferral["reasons"] == {
        str(cooled): "cooldown",
        str(spent): "budget_exhausted",
        str(sick): "below_min_health",
    }

    # Without the unhealthy inbox, the earliest moment is the end of the cooldown, not a blind retry.
    async with world.sm() as session, session.begin():
        await session.delete(
            await session.get_one(CampaignAccount, {"campaign_id": world.campaign_id, "account_id": sick})
        )
    later = NOW + timedelta(minutes=6)
    await world.dispatch(now=later)
    assert (await world.enrollment(enrollment_id)).next_send_at == NOW + timedelta(hours=2)

    # Only a spent budget left: the next UTC midnight. Once an inbox can send, the reason is cleared.
    async with world.sm() as session, session.begin():
        (await session.get_one(EmailAccount, cooled)).cooldown_until = None
        (await session.get_one(EmailAccount, cooled)).daily_send_limit = 0
    await world.dispatch(now=NOW + timedelta(hours=2))
    assert (await world.enrollment(enrollment_id)).next_send_at == datetime(2026, 11, 25, tzinfo=UTC)
    async with world.sm() as session, session.begin():
        (await session.get_one(EmailAccount, cooled)).daily_send_limit = 10
    result = await world.dispatch(now=datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC))
    assert result.queued == {cooled: 1}
    e = await world.enrollment(enrollment_id)
    assert e.defer_reason is None and e.next_send_at is None


async def test_a_follow_up_waits_for_its_own_inbox_with_the_reason(world: World) -> None:
    await world.build(inboxes=2)
    enrollment_id = await world.enroll("thread@example.org")
    await world.dispatch()
    first = (await world.messages())[0]
    assert first.account_id is not None
    async with world.sm() as session, session.begin():
        e = await session.get_one(Enrollment, enrollment_id)
        e.next_step, e.next_send_at = 1, NOW
        (await session.get_one(EmailAccount, first.account_id)).cooldown_until = NOW + timedelta(minutes=30)
    result = await world.dispatch(now=NOW + timedelta(seconds=1))
    assert result.deferred == 1 and not result.queued  # the other inbox is eligible, but not its thread
    e = await world.enrollment(enrollment_id)
    assert e.defer_reason == "waiting for its inbox: cooldown"
    assert e.next_send_at == NOW + timedelta(minutes=30)


async def test_one_dispatch_of_many_rotates_like_single_picks(world: World) -> None:
    await world.build(inboxes=3)
    for i in range(10):
        await world.enroll(f"r{i}@example.org")
    result = await world.dispatch()
    assert sorted(result.queued.values()) == [3, 3, 4]
    messages = await world.messages()
    order = [m.account_id for m in messages]
    assert order[:3] == order[3:6] == order[6:9]  # round-robin, least recently used first
    assert len(set(order[:3])) == 3
