"""Each emitted event type, produced by the real flow that causes it (API, dispatcher, sender), and
nothing from a change that is rolled back."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.campaigns import service as campaign_service
from nimbus_api.models import Campaign, CampaignStep, EmailAccount, Enrollment, Event, Message
from nimbus_api.sending.dispatcher import dispatch_campaign
from nimbus_api.sending.mx import MxChecker
from nimbus_api.sending.sender import SenderDeps, run_inbox
from tests.conftest import Tenant
from tests.events.conftest import events_of
from tests.sending.conftest import PUBLIC, Campaigns
from tests.servers.dns_server import make_zone
from tests.servers.mail_world import MailWorld
from tests.servers.smtp_server import TestSmtpServer

Sm = async_sessionmaker[AsyncSession]

# ``account.disabled`` fields that only the bounce guard fills (null otherwise: the keys are always there)
NOT_BY_THE_GUARD = {"campaign_id": None, "bounce_rate": None, "bounces": None, "sends": None, "threshold": None}


async def _enrollment_ids(sm: Sm, campaign_id: uuid.UUID) -> list[uuid.UUID]:
    async with sm() as session:
        return list(await session.scalars(select(Enrollment.id).where(Enrollment.campaign_id == campaign_id)))


def _data(events: list[Event]) -> list[dict[str, object]]:
    return [e.payload["data"] for e in events]


async def test_campaign_started_paused_and_resumed_through_the_api(
    campaigns: Campaigns, tenant: Tenant, sessionmaker: Sm
) -> None:
    inbox = await campaigns.inbox()
    steps = [{"delay_seconds": 0, "subject": "s", "text": "t"}]
    created = await tenant.client.post("/v1/campaigns", json={"name": "Q4", "type": "cold", "steps": steps})
    campaign_id = created.json()["id"]
    await tenant.client.post(f"/v1/campaigns/{campaign_id}/accounts", json={"account_ids": [str(inbox)]})
    for action in ("start", "start", "pause", "pause", "start"):  # repeats change nothing: no event
        assert (await tenant.client.post(f"/v1/campaigns/{campaign_id}/{action}")).status_code == 200
    found = await events_of(sessionmaker, tenant.workspace_id)
    assert [e.type for e in found] == ["campaign.started", "campaign.paused", "campaign.started"]
    assert _data(found) == [
        {"campaign_id": campaign_id, "name": "Q4", "resumed": False},
        {"campaign_id": campaign_id, "name": "Q4", "reason": "manual"},
        {"campaign_id": campaign_id, "name": "Q4", "resumed": True},
    ]
    for e in found:
        assert e.payload["type"] == e.type
        assert datetime.fromisoformat(e.payload["timestamp"]) == e.created_at


async def test_a_rolled_back_change_emits_nothing_and_a_committed_one_does(
    campaigns: Campaigns, tenant: Tenant, sessionmaker: Sm
) -> None:
    campaign_id = await campaigns.campaign([await campaigns.inbox()], [])
    async with sessionmaker() as session:
        await campaign_service.pause(session, tenant.workspace_id, campaign_id)
        await session.flush()
        assert await session.scalar(select(Event.type).where(Event.workspace_id == tenant.workspace_id))
        await session.rollback()
    assert await events_of(sessionmaker, tenant.workspace_id) == []
    async with sessionmaker() as session, session.begin():
        await campaign_service.pause(session, tenant.workspace_id, campaign_id)
    assert [e.type for e in await events_of(sessionmaker, tenant.workspace_id)] == ["campaign.paused"]


async def test_a_person_switching_an_inbox_off_and_on(campaigns: Campaigns, tenant: Tenant, sessionmaker: Sm) -> None:
    inbox = await campaigns.inbox()
    for active in (False, False, True, True):
        r = await tenant.client.patch(f"/v1/email-accounts/{inbox}", json={"is_active": active})
        assert r.status_code == 200, r.text
    email = r.json()["email"]
    found = await events_of(sessionmaker, tenant.workspace_id)
    assert [(e.type, e.payload["data"]) for e in found] == [
        (
            "account.disabled",
            {"account_id": str(inbox), "email": email, "reason": "manual", "by": "person", **NOT_BY_THE_GUARD},
        ),
        ("account.enabled", {"account_id": str(inbox), "email": email}),
    ]


async def test_the_sender_pausing_an_inbox_on_a_credential_failure(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, tenant: Tenant, sessionmaker: Sm
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, inbox)
    assert account.smtp_username and mail_world.smtp.users is not None
    campaign_id = await campaigns.campaign([inbox], ["y1@example.org", "y2@example.org"])
    await campaigns.dispatch(campaign_id)
    mail_world.smtp.users[account.smtp_username] = "changed-at-the-provider"
    assert (await run_inbox(deps, inbox, max_seconds=10)).stopped_reason == "smtp.auth_failed"
    (paused,) = await events_of(sessionmaker, tenant.workspace_id)
    assert (paused.type, paused.payload["data"]) == (
        "account.disabled",
        {
            "account_id": str(inbox),
            "email": account.email,
            "reason": "smtp.auth_failed",
            "by": "sender",
            **NOT_BY_THE_GUARD,
        },
    )


async def test_enrollments_completed_by_the_last_send_and_at_dispatch(
    campaigns: Campaigns, deps: SenderDeps, tenant: Tenant, sessionmaker: Sm
) -> None:
    inbox = await campaigns.inbox()
    addresses = ["last1@example.org", "last2@example.org", "Done@example.org"]
    campaign_id = await campaigns.campaign([inbox], addresses)
    enrollments = await _enrollment_ids(sessionmaker, campaign_id)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            delete(CampaignStep).where(CampaignStep.campaign_id == campaign_id, CampaignStep.position == 1)
        )
        # this one already got every step (the campaign's steps were removed meanwhile)
        done = await session.scalar(
            select(Enrollment).where(Enrollment.id.in_(enrollments)).order_by(Enrollment.id.desc()).limit(1)
        )
        assert done is not None
        done.next_step = 1
    await campaigns.dispatch(campaign_id)
    at_dispatch = await events_of(sessionmaker, tenant.workspace_id, "enrollment.completed")
    assert [e.payload["data"]["enrollment_id"] for e in at_dispatch] == [str(done.id)]
    assert (await run_inbox(deps, inbox, max_seconds=10)).outcomes["sent"] == 2
    found = await events_of(sessionmaker, tenant.workspace_id, "enrollment.completed")
    assert {e.payload["data"]["enrollment_id"] for e in found} == {str(e) for e in enrollments}
    assert {e.payload["data"]["email"] for e in found} == set(addresses)
    for e in found:
        assert e.payload["data"]["campaign_id"] == str(campaign_id)
    # a two-step campaign's first send completes nothing
    other = await campaigns.campaign([inbox], ["first@example.org"])
    await campaigns.dispatch(other)
    assert (await run_inbox(deps, inbox, max_seconds=10)).outcomes["sent"] == 1
    assert len(await events_of(sessionmaker, tenant.workspace_id, "enrollment.completed")) == 3


async def test_a_hard_bounce_at_rcpt_bounces_the_enrollment_and_suppresses_the_address(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, tenant: Tenant, sessionmaker: Sm
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        login = (await session.get_one(EmailAccount, inbox)).smtp_username
    assert login
    server = TestSmtpServer(
        users={login: "s3cret"},
        tls_context=mail_world.certs.server_context(),
        replies={"RCPT": "550 5.1.1 No such user"},
    )
    await server.start()
    try:
        await campaigns.point_at(inbox, server.port)
        address = f"Gone-{secrets.token_hex(3)}@example.org"
        campaign_id = await campaigns.campaign([inbox], [address])
        await campaigns.dispatch(campaign_id)
        await run_inbox(deps, inbox, max_seconds=10)
    finally:
        await server.stop()
    (message,) = await campaigns.messages(campaign_id)
    suppressed, bounced = sorted(await events_of(sessionmaker, tenant.workspace_id), key=lambda e: e.type)
    assert bounced.type == "enrollment.bounced"
    data = bounced.payload["data"]
    assert (data["reason"], data["smtp_code"], data["enhanced_code"]) == ("hard_bounce", 550, "5.1.1")
    assert (data["enrollment_id"], data["message_id"], data["email"]) == (
        str(message.enrollment_id),
        str(message.id),
        address,
    )
    assert "No such user" in data["server_text"]
    assert suppressed.type == "contact.suppressed"
    assert suppressed.payload["data"]["email"] == address.lower()
    assert suppressed.payload["data"]["reason"] == "hard_bounce"


async def test_the_mx_check_at_dispatch_bounces(
    campaigns: Campaigns, mail_world: MailWorld, tenant: Tenant, sessionmaker: Sm
) -> None:
    mail_world.dns.add_zone(make_zone("nomx-events.test", '@ IN TXT "no mail here"'), "nomx-events.test")
    campaign_id = await campaigns.campaign([await campaigns.inbox()], ["a@nomx-events.test"])
    async with sessionmaker() as session, session.begin():
        campaign = await session.get_one(Campaign, campaign_id)
        campaign.verify_email_mx = True
        await dispatch_campaign(
            session, campaign, now=datetime.now(UTC), public_url=PUBLIC, mx=MxChecker(mail_world.dns.resolver())
        )
    (bounced,) = await events_of(sessionmaker, tenant.workspace_id)
    assert bounced.type == "enrollment.bounced"
    assert bounced.payload["data"]["reason"] == "mx_check" and bounced.payload["data"]["message_id"] is None
    assert bounced.payload["data"]["enrollment_id"] == str((await _enrollment_ids(sessionmaker, campaign_id))[0])


async def test_unsubscribing_and_a_manual_suppression(
    campaigns: Campaigns, http: httpx.AsyncClient, tenant: Tenant, sessionmaker: Sm
) -> None:
    campaign_id = await campaigns.campaign([await campaigns.inbox()], ["Reader@example.org"])
    async with sessionmaker() as session:
        enrollment = (await session.scalars(select(Enrollment).where(Enrollment.campaign_id == campaign_id))).one()
    for _ in range(2):  # the second click changes nothing, and says nothing
        assert (
            await http.post(f"/u/{enrollment.unsubscribe_token}", data={"List-Unsubscribe": "One-Click"})
        ).status_code == 200
    assert (await tenant.client.post("/v1/suppressions", json={"email": "manual@example.org"})).status_code == 201
    # events of one transaction share a millisecond and so have no order among them (UUIDv7)
    found = sorted(await events_of(sessionmaker, tenant.workspace_id), key=lambda e: (e.created_at, e.type))
    assert [e.type for e in found] == ["contact.suppressed", "enrollment.unsubscribed", "contact.suppressed"]
    assert found[0].payload["data"]["reason"] == "unsubscribed"
    assert found[1].payload["data"] == {
        "enrollment_id": str(enrollment.id),
        "campaign_id": str(campaign_id),
        "contact_id": str(enrollment.contact_id),
        "email": "Reader@example.org",
    }
    assert found[2].payload["data"]["reason"] == "manual" and found[2].payload["data"]["email"] == "manual@example.org"


async def test_events_are_kept_in_the_same_transaction_as_a_bulk_dispatch(
    campaigns: Campaigns, tenant: Tenant, sessionmaker: Sm
) -> None:
    """A dispatch rolled back (a worker dying mid-statement) leaves neither the completion nor its event."""
    campaign_id = await campaigns.campaign([await campaigns.inbox()], ["r@example.org"])
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(CampaignStep).where(CampaignStep.campaign_id == campaign_id))
        await session.execute(
            Enrollment.__table__.update().where(Enrollment.campaign_id == campaign_id).values(next_step=1)
        )
    async with sessionmaker() as session:
        campaign = await session.get_one(Campaign, campaign_id)
        await dispatch_campaign(
            session, campaign, now=datetime.now(UTC) + timedelta(seconds=1), public_url=PUBLIC, mx=None
        )
        await session.flush()
        await session.rollback()
    assert await events_of(sessionmaker, tenant.workspace_id) == []
    async with sessionmaker() as session:
        assert {
            m.state for m in await session.scalars(select(Message).where(Message.campaign_id == campaign_id))
        } == set()
