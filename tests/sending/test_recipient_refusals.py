"""A refusal tied to one recipient fails that message only; an inbox is paused only by what cannot be about
the recipient, says why in an account event, and a send that paused an inbox is handed over at most once.

Real connected inboxes, the real sender and pool, against the mail world's SMTP server (per-recipient
refusals) or a server of the test's own that refuses every recipient or every login.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import AccountEvent, CampaignAccount, Contact, EmailAccount, Enrollment, Message
from nimbus_api.models.message import AccountDailyUsage
from nimbus_api.sending.relay import RELAY_DOMAINS_TO_PAUSE
from nimbus_api.sending.sender import SenderDeps, run_inbox
from nimbus_api.sending.sweeper import sweep
from tests.conftest import Tenant
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.smtp_server import TestSmtpServer

RELAY_DENIED = "554 5.7.1 <{address}>: Relay access denied"
POSTFIX_POLICY = "550 5.7.1 <{address}>: Recipient address rejected: Access denied"


def tag() -> str:
    return secrets.token_hex(3)


async def login_of(sm: async_sessionmaker[AsyncSession], inbox: uuid.UUID) -> str:
    async with sm() as session:
        login = (await session.get_one(EmailAccount, inbox)).smtp_username
    assert login
    return login


async def account(sm: async_sessionmaker[AsyncSession], inbox: uuid.UUID) -> EmailAccount:
    async with sm() as session:
        return await session.get_one(EmailAccount, inbox)


async def events(sm: async_sessionmaker[AsyncSession], inbox: uuid.UUID) -> list[AccountEvent]:
    async with sm() as session:
        return list(await session.scalars(select(AccountEvent).where(AccountEvent.account_id == inbox)))


async def enrollments(sm: async_sessionmaker[AsyncSession], campaign_id: uuid.UUID) -> dict[str, Enrollment]:
    """The campaign's enrollments by contact address."""
    async with sm() as session:
        rows = await session.execute(
            select(Contact.email, Enrollment)
            .join(Enrollment, Enrollment.contact_id == Contact.id)
            .where(Enrollment.campaign_id == campaign_id)
        )
        return {row[0]: row[1] for row in rows.all()}


@pytest.fixture
async def refusing_server(mail_world: MailWorld) -> AsyncIterator[TestSmtpServer]:
    """A server of this test's own, accepting any of the mail world's logins; tests script its replies."""
    server = TestSmtpServer(users={}, tls_context=mail_world.certs.server_context())
    server.users = mail_world.smtp.users  # the same logins, also those of inboxes connected later
    await server.start()
    yield server
    await server.stop()


# --- one recipient refused: that message fails, nothing else -------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code"),
    [(RELAY_DENIED, "smtp.relay_denied"), (POSTFIX_POLICY, "smtp.recipient_rejected")],
    ids=["relay_text", "postfix_policy"],
)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
async def test_one_refused_recipient_fails_alone_and_pauses_nothing(
    campaigns: Campaigns,
    deps: SenderDeps,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    reply: str,
    code: str,
    where: str,
) -> None:
    """Wherever the refused recipient sits in the chunk (first: nothing accepted yet, so it is held as a
    suspect until the next one is accepted; last: decided by what came before), it fails alone."""
    inbox = await campaigns.inbox()
    t = tag()
    others = [f"ok{i}-{t}@example.org" for i in range(6)]
    poison = f"erin-{t}@bücher.test"
    position = {"first": 0, "middle": 3, "last": 6}[where]
    contacts = [*others[:position], poison, *others[position:]]
    mail_world.smtp.refuse[f"erin-{t}@xn--bcher-kva.test"] = reply.format(address=f"erin-{t}@xn--bcher-kva.test")
    campaign_id = await campaigns.campaign([inbox], contacts)
    await campaigns.dispatch(campaign_id)
    report = await run_inbox(deps, inbox, max_seconds=20)

    assert report.stopped_reason is None
    assert (await account(sessionmaker, inbox)).disabled_at is None
    by_address = await enrollments(sessionmaker, campaign_id)
    messages = {m.to_email: m for m in await campaigns.messages(campaign_id)}
    assert {a: messages[a].state for a in others} == dict.fromkeys(others, "sent")
    assert messages[poison].state == "failed"
    assert messages[poison].error_code == code
    assert messages[poison].reply_enhanced == "5.7.1"
    assert by_address[poison].status == "failed"
    assert by_address[poison].inbox_handoffs == 0  # never handed to another inbox
    assert await events(sessionmaker, inbox) == []


async def test_a_lone_relay_refusal_is_decided_by_asking_for_the_inboxes_own_address(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Nothing else to compare with: the sender asks the server (MAIL, RCPT to the inbox itself, RSET:
    nothing sent) and, the inbox's own address being accepted, fails the one message only."""
    inbox = await campaigns.inbox()
    t = tag()
    poison = f"lone-{t}@example.org"
    mail_world.smtp.refuse[poison] = RELAY_DENIED.format(address=poison)
    campaign_id = await campaigns.campaign([inbox], [poison])
    await campaigns.dispatch(campaign_id)
    delivered_before = len(mail_world.smtp.messages)
    report = await run_inbox(deps, inbox, max_seconds=20)

    assert report.outcomes == Counter({"failed": 1})
    assert (await account(sessionmaker, inbox)).disabled_at is None
    (message,) = await campaigns.messages(campaign_id)
    assert (message.state, message.error_code) == ("failed", "smtp.relay_denied")
    assert len(mail_world.smtp.messages) == delivered_before  # the probe sent nothing


# --- the inbox cannot relay: paused, with the reason on record --------------------------------------------


async def test_relay_refused_for_every_recipient_pauses_the_inbox_with_an_event(
    campaigns: Campaigns,
    deps: SenderDeps,
    refusing_server: TestSmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: Tenant,
) -> None:
    inbox = await campaigns.inbox()
    await campaigns.point_at(inbox, refusing_server.port)
    refusing_server.replies["RCPT"] = "554 5.7.1 Relay access denied"
    t = tag()
    contacts = [f"c{i}-{t}@domain{i}.example.org" for i in range(RELAY_DOMAINS_TO_PAUSE + 2)]
    campaign_id = await campaigns.campaign([inbox], contacts)
    await campaigns.dispatch(campaign_id)
    report = await run_inbox(deps, inbox, max_seconds=20)

    assert report.stopped_reason == "smtp.relay_denied"
    paused = await account(sessionmaker, inbox)
    assert paused.disabled_at is not None and paused.disabled_reason == "smtp.relay_denied"
    # Every step-1 message went back to the pool (deleted, its enrollment due again, no inbox held).
    assert await campaigns.messages(campaign_id) == []
    by_address = await enrollments(sessionmaker, campaign_id)
    assert all(e.status == "active" and e.account_id is None and e.next_send_at for e in by_address.values())
    # The sends that met the refusals count one hand-over each; the rest were never tried.
    assert sorted(e.inbox_handoffs for e in by_address.values()) == [0, 0] + [1] * RELAY_DOMAINS_TO_PAUSE

    (event,) = await events(sessionmaker, inbox)
    assert event.kind == "paused" and event.actor == "system:sender"
    detail = event.detail
    assert detail["reason"] == "smtp.relay_denied" and detail["stage"] == "rcpt"
    assert detail["recipient"] in contacts
    assert uuid.UUID(detail["message_id"])
    assert detail["server_reply"] == {"code": 554, "enhanced": "5.7.1", "text": "Relay access denied"}
    assert detail["handed_back"] == len(contacts)
    # ... and the API shows it.
    r = await tenant.client.get(f"/v1/email-accounts/{inbox}/events")
    assert r.status_code == 200, r.text
    (shown,) = [e for e in r.json()["data"] if e["kind"] == "paused"]
    assert shown["detail"]["recipient"] == detail["recipient"]
    assert shown["detail"]["server_reply"]["text"] == "Relay access denied"


async def test_a_lone_relay_refusal_pauses_when_the_inboxes_own_address_is_refused_too(
    campaigns: Campaigns,
    deps: SenderDeps,
    refusing_server: TestSmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    inbox = await campaigns.inbox()
    await campaigns.point_at(inbox, refusing_server.port)
    refusing_server.replies["RCPT"] = "554 5.7.1 Relay access denied"
    campaign_id = await campaigns.campaign([inbox], [f"only-{tag()}@example.org"])
    await campaigns.dispatch(campaign_id)
    report = await run_inbox(deps, inbox, max_seconds=20)

    assert report.stopped_reason == "smtp.relay_denied"
    assert (await account(sessionmaker, inbox)).disabled_reason == "smtp.relay_denied"
    assert await campaigns.messages(campaign_id) == []  # handed back
    (enrollment,) = (await enrollments(sessionmaker, campaign_id)).values()
    assert (enrollment.status, enrollment.inbox_handoffs) == ("active", 1)
    assert refusing_server.messages == []


async def test_a_send_that_pauses_a_second_inbox_fails_instead_of_being_handed_over_again(
    campaigns: Campaigns,
    deps: SenderDeps,
    refusing_server: TestSmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first, second = await campaigns.inbox(), await campaigns.inbox()
    for inbox in (first, second):
        await campaigns.point_at(inbox, refusing_server.port)
    refusing_server.replies["AUTH"] = "535 5.7.8 Authentication credentials invalid"
    t = tag()
    contacts = [f"h{i}-{t}@example.org" for i in range(3)]
    campaign_id = await campaigns.campaign([first], contacts)
    await campaigns.dispatch(campaign_id)
    assert (await run_inbox(deps, first, max_seconds=20)).stopped_reason == "smtp.auth_failed"
    handed = await enrollments(sessionmaker, campaign_id)
    assert sorted(e.inbox_handoffs for e in handed.values()) == [0, 0, 1]  # the send that met the failure
    (culprit,) = [a for a, e in handed.items() if e.inbox_handoffs == 1]

    # The pool's other inbox takes the three sends, and fails the same way with the culprit first.
    async with sessionmaker() as session, session.begin():
        session.add(CampaignAccount(campaign_id=campaign_id, account_id=second))
    await campaigns.dispatch(campaign_id)
    assert {m.account_id for m in await campaigns.messages(campaign_id)} == {second}
    async with sessionmaker() as session, session.begin():
        for message in await session.scalars(select(Message).where(Message.campaign_id == campaign_id)):
            if message.to_email == culprit:
                message.created_at = message.created_at.replace(year=2000)  # leased first
    assert (await run_inbox(deps, second, max_seconds=20)).stopped_reason == "smtp.auth_failed"

    after = await enrollments(sessionmaker, campaign_id)
    assert after[culprit].status == "failed"
    assert after[culprit].stop_reason == "paused 2 inboxes: smtp.auth_failed"
    (failed,) = [m for m in await campaigns.messages(campaign_id) if m.to_email == culprit]
    assert (failed.state, failed.error_code) == ("failed", "smtp.auth_failed")
    others = [a for a in contacts if a != culprit]
    assert all(after[a].status == "active" and after[a].account_id is None for a in others)
    (event,) = await events(sessionmaker, second)
    assert event.detail["recipient"] == culprit
    assert event.detail["failed"] == [str(failed.id)]
    assert event.detail["server_reply"]["code"] == 535
    assert refusing_server.messages == []


# --- the pool: one poison recipient among a hundred --------------------------------------------------------


async def test_one_poison_recipient_among_100_over_3_inboxes_pauses_no_inbox(
    campaigns: Campaigns, deps: SenderDeps, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    inboxes = [await campaigns.inbox() for _ in range(3)]
    t = tag()
    poison = f"erin-{t}@bücher.test"
    contacts = [f"p{i}-{t}@example.org" for i in range(99)]
    contacts.insert(40, poison)
    wire = f"erin-{t}@xn--bcher-kva.test"
    mail_world.smtp.refuse[wire] = POSTFIX_POLICY.format(address=wire)
    campaign_id = await campaigns.campaign(inboxes, contacts)
    await campaigns.dispatch(campaign_id)
    for inbox in inboxes:
        await run_inbox(deps, inbox, max_seconds=30)

    states = Counter(m.state for m in await campaigns.messages(campaign_id))
    assert states == Counter({"sent": 99, "failed": 1})
    assert [(await account(sessionmaker, i)).disabled_at for i in inboxes] == [None, None, None]
    sent_to = [r for env in mail_world.smtp.messages for r in env.rcpt_tos if r.endswith(f"-{t}@example.org")]
    assert sorted(sent_to) == sorted(a for a in contacts if a != poison)  # each exactly once


async def test_the_sweeper_hands_back_step_1_sends_left_on_a_paused_inbox(
    campaigns: Campaigns, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A sender that recorded a chunk after the pause (another lane, another worker) leaves queued or
    deferred step-1 messages on the paused inbox: the next sweep hands them back, budget released."""
    inbox = await campaigns.inbox()
    campaign_id = await campaigns.campaign([inbox], [f"s{i}-{tag()}@example.org" for i in range(2)])
    await campaigns.dispatch(campaign_id)
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        (await session.get_one(EmailAccount, inbox)).disabled_at = now
        _, second = list(await session.scalars(select(Message).where(Message.campaign_id == campaign_id)))
        second.state, second.retry_at = "deferred", now + timedelta(hours=1)
        used = await session.scalar(select(AccountDailyUsage.sends).where(AccountDailyUsage.account_id == inbox))
    assert used == 2
    async with sessionmaker() as session, session.begin():
        report = await sweep(session, now)
    assert report.handed_back >= 2
    assert await campaigns.messages(campaign_id) == []
    by_address = await enrollments(sessionmaker, campaign_id)
    assert all(e.status == "active" and e.account_id is None and e.next_send_at == now for e in by_address.values())
    async with sessionmaker() as session:
        used = await session.scalar(select(AccountDailyUsage.sends).where(AccountDailyUsage.account_id == inbox))
    assert used == 0
