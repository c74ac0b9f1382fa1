"""A warmup message is sent at most once, whatever dies when: the states of ``nimbus_api.warmup``.

* killed after the SMTP transaction and before its record: the lease expires, the row is ``unknown`` and
  never sent again; the recipient's sync then proves it arrived and it is ``sent``, counted once;
* killed after the claim and before SMTP: ``unknown`` too, and never sent (one warmup message lost);
* a row whose inbox paused before its time is ``skipped``, not sent.
Also: a message carrying a forged marker is ordinary inbound mail.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.kit.db import utc_day
from nimbus_api.models import EmailAccount, InboundMessage, WarmupMessage
from nimbus_api.warmup import sender
from nimbus_api.warmup.sender import WarmupDeps
from tests.conftest import Tenant
from tests.servers.mail_world import MailWorld
from tests.sync.conftest import RunnerFactory, inbound, mail
from tests.warmup.test_exchange import _pair


async def _planned(
    sessionmaker: async_sessionmaker[AsyncSession], a: EmailAccount, b: EmailAccount, now: datetime
) -> uuid.UUID:
    row_id = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        session.add(
            WarmupMessage(
                id=row_id,
                sender_id=a.id,
                recipient_id=b.id,
                day=utc_day(now),
                slot=0,
                seed=secrets.randbits(60),
                subject="Checking in",
                message_id_header=f"{secrets.token_hex(16)}@{a.email.rpartition('@')[2]}",
                send_at=now - timedelta(seconds=1),
                created_at=now,
            )
        )
    return row_id


async def _row(sessionmaker: async_sessionmaker[AsyncSession], row_id: uuid.UUID) -> WarmupMessage:
    async with sessionmaker() as session:
        return await session.get_one(WarmupMessage, row_id)


async def _total(sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        return (await session.get_one(EmailAccount, account_id)).warmup_sent_total


def _copies(world: MailWorld, user: str, message_id: str) -> int:
    return sum(
        message_id.encode() in m for f in ("INBOX", "Junk") for m in world.dovecot.maildir_messages(user, folder=f)
    )


async def _claim(deps: WarmupDeps, now: datetime) -> list[uuid.UUID]:
    async with deps.sessionmaker() as session:
        claimed = await sender.claim(session, deps.owner, now, lease_seconds=60, thresholds=deps.thresholds, limit=10)
        await session.commit()
    return claimed


async def test_a_crash_between_send_and_record_never_sends_twice(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_runner: RunnerFactory,
    make_deps: Callable[..., WarmupDeps],
) -> None:
    a, b = await _pair(tenant, sessionmaker)
    runner = make_runner()
    await runner.lease_round()
    await runner.poll_now(b.id)
    now = datetime.now(UTC)
    row_id = await _planned(sessionmaker, a, b, now)
    dying = make_deps()
    assert await _claim(dying, now) == [row_id]
    outcome = await sender.transmit(dying, row_id)  # on the wire ...
    assert outcome.state == "sent"
    row = await _row(sessionmaker, row_id)
    assert row.state == "sending" and _copies(mail_world, b.email, row.message_id_header) == 1
    # ... and the worker dies before recording it. Another worker comes along after the lease:
    other = make_deps()
    later = now + timedelta(seconds=61)
    assert await sender.send_due(other, now=later) == {}
    row = await _row(sessionmaker, row_id)
    assert row.state == "unknown" and row.lease_owner is None
    assert await sender.send_due(other, now=later + timedelta(hours=1)) == {}
    assert _copies(mail_world, b.email, row.message_id_header) == 1  # never twice
    assert await _total(sessionmaker, a.id) == 0  # not counted on a guess
    # the dead worker's late record changes nothing: it no longer holds the row
    async with sessionmaker() as session:
        assert not await sender.record(session, row_id, dying.owner, outcome, later)
        await session.commit()
    # the recipient's sync finds it: evidence, so it is sent, and counted once
    await runner.poll_now(b.id)
    row = await _row(sessionmaker, row_id)
    assert row.state == "sent" and row.received_at is not None and row.landed == "inbox"
    assert await _total(sessionmaker, a.id) == 1
    await runner.poll_now(b.id)
    assert await _total(sessionmaker, a.id) == 1


async def test_a_crash_before_smtp_loses_the_message_and_never_sends_it(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_deps: Callable[..., WarmupDeps],
) -> None:
    a, b = await _pair(tenant, sessionmaker)
    now = datetime.now(UTC)
    row_id = await _planned(sessionmaker, a, b, now)
    assert await _claim(make_deps(), now) == [row_id]  # claimed, then the worker dies
    assert await sender.send_due(make_deps(), now=now + timedelta(seconds=61)) == {}
    row = await _row(sessionmaker, row_id)
    assert row.state == "unknown"
    assert _copies(mail_world, b.email, row.message_id_header) == 0


async def test_a_paused_inbox_sends_nothing(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_deps: Callable[..., WarmupDeps],
) -> None:
    a, b = await _pair(tenant, sessionmaker)
    now = datetime.now(UTC)
    row_id = await _planned(sessionmaker, a, b, now)
    async with sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id == a.id).values(bounce_rate_7d=5.0))
    assert await sender.send_due(make_deps(warmup_max_bounce_rate_7d=3.0), now=now) == {}
    row = await _row(sessionmaker, row_id)
    assert row.state == "skipped" and _copies(mail_world, b.email, row.message_id_header) == 0


async def test_a_forged_marker_is_ordinary_mail(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_runner: RunnerFactory,
    make_deps: Callable[..., WarmupDeps],
) -> None:
    _, b = await _pair(tenant, sessionmaker)
    runner = make_runner()
    await runner.lease_round()
    await runner.poll_now(b.id)
    deps = make_deps()
    real_id = f"{secrets.token_hex(8)}@example.org"
    copied = deps.marker.sign(real_id)
    forged = [
        mail(
            "made up", message_id=f"{secrets.token_hex(8)}@example.org", X_Nimbus_Warmup="v1.AAAAAAAAAAAAAAAAAAAAAAAA"
        ),
        mail("copied", message_id=f"{secrets.token_hex(8)}@example.org", X_Nimbus_Warmup=copied),
    ]
    for raw in forged:
        mail_world.dovecot.deliver_lmtp(b.email, raw)
    await runner.poll_now(b.id)
    subjects = {row.subject for row in await inbound(sessionmaker, b.id)}
    assert {"made up", "copied"} <= subjects
    r = await tenant.client.get("/v1/inbox", params={"account_id": str(b.id)})
    assert {"made up", "copied"} <= {m["subject"] for m in r.json()["data"]}
    async with sessionmaker() as session:
        assert (
            await session.scalar(
                select(InboundMessage.id).where(InboundMessage.account_id == b.id, InboundMessage.subject == "copied")
            )
        ) is not None


async def test_activity_is_workspace_isolated_and_checks_its_input(
    tenant: Tenant, make_tenant: Callable[..., object], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    a, _ = await _pair(tenant, sessionmaker)
    other = await make_tenant()  # type: ignore[misc]
    r = await other.client.get(f"/v1/email-accounts/{a.id}/warmup/activity")  # type: ignore[attr-defined]
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "email_account.not_found"
    for days in ("0", "91", "x"):
        r = await tenant.client.get(f"/v1/email-accounts/{a.id}/warmup/activity", params={"days": days})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    r = await tenant.client.get(f"/v1/email-accounts/{a.id}/warmup/activity", params={"days": 30})
    assert r.status_code == 200 and len(r.json()["days"]) == 30
    assert all(d["sent"] == 0 and d["received"] == 0 for d in r.json()["days"])


async def test_an_inbox_opts_in_through_the_api(tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    a, _ = await _pair(tenant, sessionmaker)
    r = await tenant.client.patch(
        f"/v1/email-accounts/{a.id}", json={"warmup_enabled": False, "warmup_daily_limit": 12}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["warmup_enabled"] is False and body["warmup_daily_limit"] == 12 and body["warmup_sent_total"] == 0
    r = await tenant.client.patch(
        f"/v1/email-accounts/{a.id}", json={"warmup_enabled": True, "warmup_daily_limit": None}
    )
    assert r.status_code == 200 and r.json()["warmup_enabled"] is True and r.json()["warmup_daily_limit"] is None
    for bad in ({"warmup_enabled": None}, {"warmup_daily_limit": 501}, {"warmup_daily_limit": -1}):
        r = await tenant.client.patch(f"/v1/email-accounts/{a.id}", json=bad)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), bad


async def test_received_before_the_dead_worker_recorded_it(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_runner: RunnerFactory,
    make_deps: Callable[..., WarmupDeps],
) -> None:
    """The recipient's sync saw it while the sender still held it: when the lease expires it is ``sent``."""
    a, b = await _pair(tenant, sessionmaker)
    runner = make_runner()
    await runner.lease_round()
    await runner.poll_now(b.id)
    now = datetime.now(UTC)
    row_id = await _planned(sessionmaker, a, b, now)
    dying = make_deps()
    assert await _claim(dying, now) == [row_id]
    assert (await sender.transmit(dying, row_id)).state == "sent"
    await runner.poll_now(b.id)
    row = await _row(sessionmaker, row_id)
    assert row.state == "sending" and row.received_at is not None
    assert await _total(sessionmaker, a.id) == 0
    assert await sender.send_due(make_deps(), now=now + timedelta(seconds=61)) == {}
    row = await _row(sessionmaker, row_id)
    assert row.state == "sent" and await _total(sessionmaker, a.id) == 1
    assert _copies(mail_world, b.email, row.message_id_header) == 1


async def test_refusals_retry_for_now_and_stop_for_good(
    tenant: Tenant,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_deps: Callable[..., WarmupDeps],
) -> None:
    a, b = await _pair(tenant, sessionmaker)
    now = datetime.now(UTC)
    row_id = await _planned(sessionmaker, a, b, now)
    deps = make_deps()
    try:
        mail_world.smtp.refuse[b.email] = "451 4.7.1 Try again later"
        assert await sender.send_due(deps, now=now) == {"planned": 1}
        row = await _row(sessionmaker, row_id)
        assert row.state == "planned" and row.attempts == 1 and row.send_at > now + timedelta(minutes=14)
        assert (row.last_error or "").startswith("smtp.") and row.reply_code == 451
        assert await sender.send_due(deps, now=now + timedelta(minutes=5)) == {}  # not due yet
        mail_world.smtp.refuse[b.email] = "550 5.1.1 No such user"
        assert await sender.send_due(deps, now=now + timedelta(minutes=16)) == {"failed": 1}
        row = await _row(sessionmaker, row_id)
        assert row.state == "failed" and row.attempts == 2 and row.reply_code == 550
    finally:
        mail_world.smtp.refuse.pop(b.email, None)
    assert await sender.send_due(deps, now=now + timedelta(hours=2)) == {}  # failed is final
    assert _copies(mail_world, b.email, row.message_id_header) == 0
    assert await _total(sessionmaker, a.id) == 0
