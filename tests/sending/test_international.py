"""Internationalized addresses end to end: connected through the API (DNS, SMTP test send, IMAP roundtrip)
and sent to in a campaign, against the mail world's servers and one without SMTPUTF8.

An IDN domain (``bücher``) travels as IDNA A-labels everywhere (DNS, envelope, header fields); a non-ASCII
local part (``zoë``) needs SMTPUTF8 and UTF-8 header fields, and where the server lacks SMTPUTF8 only
that message fails (``smtp.smtputf8_unsupported``), never the chunk or the inbox."""

from __future__ import annotations

import email
import secrets
import uuid
from email import policy

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Domain, EmailAccount, Enrollment
from nimbus_api.sending.sender import SenderDeps, run_inbox
from tests.conftest import Tenant, account_payload
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.smtp_server import TestSmtpServer


def _utf8(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_string(raw.decode("utf-8"), policy=policy.SMTPUTF8)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def test_an_account_on_an_idn_domain_connects_with_the_full_roundtrip(
    tenant: Tenant, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    t = secrets.token_hex(3)
    ascii_form, unicode_form = f"a-{t}@xn--bcher-kva.example", f"a-{t}@bücher.example"
    body = account_payload(email=ascii_form)  # the mailbox (logins in ASCII) and the domain's DNS
    body["email"] = unicode_form
    r = await tenant.client.post("/v1/email-accounts", json=body)
    assert r.status_code == 201, r.text
    checks = {c["name"]: c["status"] for c in r.json()["last_verification"]["checks"]}
    assert checks == {"dns": "passed", "smtp": "passed", "imap": "passed", "roundtrip": "passed"}
    assert r.json()["email"] == unicode_form
    test_message = next(m for m in reversed(mail_world.smtp.messages) if m.rcpt_tos == [ascii_form])
    assert test_message.mail_from == ascii_form
    assert "SMTPUTF8" not in test_message.mail_options
    assert (test_message.original_content or b"").isascii()
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, uuid.UUID(r.json()["id"]))
        domain = await session.get_one(Domain, account.domain_id)
    assert domain.name == "xn--bcher-kva.example"


async def test_an_account_with_a_non_ascii_local_part_connects_over_smtputf8(
    tenant: Tenant, mail_world: MailWorld
) -> None:
    t = secrets.token_hex(3)
    login = f"zoe-{t}@example.test"
    address = f"zoë-{t}@example.test"
    body = account_payload(email=login, imap=None)
    body["email"] = address
    r = await tenant.client.post("/v1/email-accounts", json=body)
    assert r.status_code == 201, r.text
    sent = next(m for m in reversed(mail_world.smtp.messages) if m.rcpt_tos == [address])
    assert sent.mail_from == address
    assert "SMTPUTF8" in sent.mail_options
    parsed = _utf8(sent.original_content or b"")
    assert parsed["To"].addresses[0].addr_spec == address
    assert parsed["From"].addresses[0].display_name == "Ada Lovelace"


async def test_without_smtputf8_a_non_ascii_account_is_a_clear_422_and_the_connection_survives(
    tenant: Tenant, mail_world: MailWorld
) -> None:
    server = TestSmtpServer(users={}, tls_context=mail_world.certs.server_context(), smtputf8=False)
    server.users = mail_world.smtp.users
    await server.start()
    try:
        t = secrets.token_hex(3)
        body = account_payload(email=f"zoe-{t}@example.test", imap=None)
        body["email"] = f"zoë-{t}@example.test"
        body["smtp"] = {**body["smtp"], "port": server.port}  # type: ignore[dict-item]
        r = await tenant.client.post("/v1/email-accounts", json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "smtp.smtputf8_unsupported"
        assert "SMTPUTF8" in (r.json()["checks"][1].get("hint") or "")
        follow_up = await tenant.client.get("/v1/email-accounts")  # same client, same connection
        assert follow_up.status_code == 200
        assert all(a["email"] != body["email"] for a in follow_up.json()["data"])  # nothing saved
    finally:
        await server.stop()


@pytest.mark.parametrize("smtputf8", [True, False], ids=["server_has_smtputf8", "server_without_smtputf8"])
async def test_a_chunk_where_one_message_needs_smtputf8_and_the_others_do_not(
    campaigns: Campaigns,
    deps: SenderDeps,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    smtputf8: bool,
) -> None:
    inbox = await campaigns.inbox()
    server = TestSmtpServer(users={}, tls_context=mail_world.certs.server_context(), smtputf8=smtputf8)
    server.users = mail_world.smtp.users
    await server.start()
    try:
        async with sessionmaker() as session, session.begin():
            account = await session.get_one(EmailAccount, inbox)
            account.smtp_port, account.credentials_version = server.port, account.credentials_version + 1
        t = secrets.token_hex(3)
        idn, utf8_local, plain = f"erin-{t}@bücher.test", f"zoë-{t}@example.org", f"grace-{t}@example.org"
        campaign_id = await campaigns.campaign([inbox], [idn, utf8_local, plain])
        await campaigns.dispatch(campaign_id)
        report = await run_inbox(deps, inbox, max_seconds=20)
    finally:
        await server.stop()

    assert report.stopped_reason is None
    states = {m.to_email: (m.state, m.error_code) for m in await campaigns.messages(campaign_id)}
    assert states[idn] == ("sent", None)
    assert states[plain] == ("sent", None)
    if smtputf8:
        assert states[utf8_local] == ("sent", None)
    else:
        assert states[utf8_local] == ("failed", "smtp.smtputf8_unsupported")
        async with sessionmaker() as session:
            failed = list(
                await session.scalars(
                    select(Enrollment).where(Enrollment.campaign_id == campaign_id, Enrollment.status == "failed")
                )
            )
        assert [e.stop_reason for e in failed] == ["smtp.smtputf8_unsupported"]
    async with sessionmaker() as session:
        assert (await session.get_one(EmailAccount, inbox)).disabled_at is None

    by_rcpt = {env.rcpt_tos[0]: env for env in server.messages}
    idn_envelope = by_rcpt[f"erin-{t}@xn--bcher-kva.test"]
    assert "SMTPUTF8" not in idn_envelope.mail_options
    idn_message = email.message_from_bytes(idn_envelope.original_content or b"", policy=policy.default)
    assert idn_message["To"].addresses[0].addr_spec == f"erin-{t}@xn--bcher-kva.test"
    assert "SMTPUTF8" not in by_rcpt[plain].mail_options
    if smtputf8:
        utf8_envelope = by_rcpt[utf8_local]
        assert "SMTPUTF8" in utf8_envelope.mail_options
        parsed = _utf8(utf8_envelope.original_content or b"")
        assert parsed["To"].addresses[0].addr_spec == utf8_local
        assert parsed["Subject"] == "Hello Grace"
    else:
        assert utf8_local not in by_rcpt
