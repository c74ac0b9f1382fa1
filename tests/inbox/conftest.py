"""The mail loop for the effect tests: an inbox with IMAP in a campaign, step 1 really sent through the
mail world's SMTP server, and answers (replies, bounce reports, auto-replies, complaints) delivered into
the inbox's real Dovecot mailbox, then read by a ``SyncRunner``."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Campaign, EmailAccount, Enrollment, Event, InboundMessage, Message
from nimbus_api.sending.sender import SenderDeps, run_inbox
from nimbus_api.sync.runner import SyncRunner
from tests.conftest import Tenant, account_payload
from tests.sending.conftest import Campaigns, campaigns, deps, pool
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import make_runner, park_others

__all__ = ["campaigns", "deps", "make_runner", "pool"]


def dsn_report(
    inbox_email: str,
    contact: str,
    ours: Message,
    *,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    report_id: str | None = None,
) -> bytes:
    """A bounce report as Postfix writes one (RFC 3464), returning our message's headers."""
    boundary = f"bnd-{secrets.token_hex(6)}"
    report = report_id or make_msgid(domain="mx.example.org")
    diag = diagnostic.format(rcpt=contact)
    lines = [
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)",
        f"To: {inbox_email}",
        "Subject: Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail (still being retried)",
        f"Message-ID: {report}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is the mail system at host mx.example.org.",
        "",
        "I'm sorry to have to inform you that your message could not be delivered"
        if action == "failed"
        else "Your message could not be delivered for 4 hours. It will be retried until it is 5 days old.",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.example.org",
        "",
        f"Final-Recipient: rfc822; {contact}",
        f"Original-Recipient: rfc822;{contact}",
        f"Action: {action}",
        f"Status: {status}",
        "Remote-MTA: dns; mail.example.org",
        f"Diagnostic-Code: {diag}",
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
        f"From: Ada <{inbox_email}>",
        f"To: {contact}",
        f"Subject: {ours.subject}",
        f"Message-ID: {ours.message_id_header}",
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode()


@dataclass
class Loop:
    """One inbox, one campaign, its contacts; ``sent`` maps each contact address to its step-1 message."""

    tenant: Tenant
    world: MailWorld
    sessionmaker: async_sessionmaker[AsyncSession]
    runner: SyncRunner
    campaigns: Campaigns
    deps: SenderDeps
    inbox_id: uuid.UUID
    inbox_email: str
    campaign_id: uuid.UUID
    contacts: list[str]
    sent: dict[str, Message] = field(default_factory=dict)

    async def send_step(self) -> None:
        await self.campaigns.dispatch(self.campaign_id)
        await run_inbox(self.deps, self.inbox_id, max_seconds=20)
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(Message).where(Message.campaign_id == self.campaign_id, Message.step == 0)
            )
            self.sent = {m.to_email: m for m in rows}

    def deliver(self, raw: bytes | EmailMessage, *, folder: str | None = None) -> None:
        data = raw.as_bytes() if isinstance(raw, EmailMessage) else raw
        self.world.dovecot.deliver_lmtp(self.inbox_email, data, folder=folder)

    async def sync(self) -> None:
        if self.inbox_id not in self.runner.held:
            await self.runner.lease_round()
        await self.runner.poll_now(self.inbox_id)

    async def inbound(self) -> list[InboundMessage]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(InboundMessage).where(InboundMessage.account_id == self.inbox_id).order_by(InboundMessage.uid)
            )
            return list(rows)

    async def enrollment(self, contact: str) -> Enrollment:
        async with self.sessionmaker() as session:
            message = self.sent[contact]
            return await session.get_one(Enrollment, message.enrollment_id)

    async def messages(self, contact: str) -> list[Message]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(Message).where(Message.enrollment_id == self.sent[contact].enrollment_id).order_by(Message.step)
            )
            return list(rows)

    async def events(self, kind: str) -> list[dict[str, object]]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(Event).where(Event.workspace_id == self.tenant.workspace_id, Event.type == kind)
            )
            return [e.payload["data"] for e in rows]

    def dsn(
        self,
        contact: str,
        *,
        status: str = "5.1.1",
        action: str = "failed",
        diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
        report_id: str | None = None,
    ) -> bytes:
        return dsn_report(
            self.inbox_email,
            contact,
            self.sent[contact],
            status=status,
            action=action,
            diagnostic=diagnostic,
            report_id=report_id,
        )

    def complaint(self, contact: str) -> bytes:
        """A feedback-loop report (RFC 5965 ARF) with our message attached."""
        ours = self.sent[contact]
        boundary = f"arf-{secrets.token_hex(6)}"
        lines = [
            "From: feedback@fbl.example.org",
            f"To: {self.inbox_email}",
            "Subject: Complaint about a message",
            f"Message-ID: {make_msgid(domain='fbl.example.org')}",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"',
            "",
            f"--{boundary}",
            "Content-Type: text/plain",
            "",
            "This is an email abuse report for an email message received from IP 127.0.0.1.",
            "",
            f"--{boundary}",
            "Content-Type: message/feedback-report",
            "",
            "Feedback-Type: abuse",
            "User-Agent: ExampleFBL/1.0",
            "Version: 1",
            f"Original-Rcpt-To: {contact}",
            "Source-IP: 127.0.0.1",
            "",
            f"--{boundary}",
            "Content-Type: message/rfc822",
            "",
            f"From: Ada <{self.inbox_email}>",
            f"To: {contact}",
            f"Subject: {ours.subject}",
            f"Message-ID: {ours.message_id_header}",
            "",
            "Hi Grace",
            "",
            f"--{boundary}--",
            "",
        ]
        return "\r\n".join(lines).encode()

    def reply_to(self, contact: str, body: str = "Sounds good, let's talk on Tuesday.", **headers: str) -> EmailMessage:
        """What a person's mail client sends back: threaded on our message, quoting it."""
        ours = self.sent[contact]
        msg = EmailMessage()
        msg["From"] = f"Grace <{contact}>"
        msg["To"] = self.inbox_email
        msg["Subject"] = f"Re: {ours.subject}"
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg["In-Reply-To"] = ours.message_id_header
        msg["References"] = ours.message_id_header
        for name, value in headers.items():
            msg[name.replace("_", "-")] = value
        msg.set_content(f"{body}\n\nOn Tue, Ada wrote:\n> Hi Grace\n> unsubscribe: ...\n")
        return msg


LoopFactory = Callable[..., Awaitable[Loop]]


@pytest.fixture
async def make_loop(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_runner,
    campaigns: Campaigns,
    deps: SenderDeps,
) -> LoopFactory:
    async def factory(contacts: int = 3, *, bounce_rate_threshold: float | None = None) -> Loop:
        email = f"seller-{secrets.token_hex(4)}@example.test"
        r = await tenant.client.post("/v1/email-accounts", json=account_payload(email=email, from_name="Ada"))
        assert r.status_code == 201, r.text
        inbox_id = uuid.UUID(r.json()["id"])
        async with sessionmaker() as session, session.begin():
            account = await session.get_one(EmailAccount, inbox_id)
            # stage 5: fully warmed, so the stage does not cap daily_send_limit (``stages.limits``)
            account.current_stage, account.overall_score, account.daily_send_limit = 5, 80.0, 1000
        await park_others(sessionmaker, tenant.workspace_id)
        addresses = [f"lead{i}-{secrets.token_hex(3)}@example.org" for i in range(contacts)]
        campaign_id = await campaigns.campaign([inbox_id], addresses)
        if bounce_rate_threshold is not None:
            async with sessionmaker() as session, session.begin():
                campaign = await session.get_one(Campaign, campaign_id)
                campaign.bounce_rate_threshold = bounce_rate_threshold
        return Loop(
            tenant=tenant,
            world=mail_world,
            sessionmaker=sessionmaker,
            runner=make_runner(),
            campaigns=campaigns,
            deps=deps,
            inbox_id=inbox_id,
            inbox_email=email,
            campaign_id=campaign_id,
            contacts=addresses,
        )

    return factory


@pytest.fixture
async def loop(make_loop: LoopFactory) -> Loop:
    return await make_loop()
