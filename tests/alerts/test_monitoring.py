"""`GET /v1/email-accounts/{id}/monitoring`: every figure against rows written for it, with its window."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.alerts.evaluate import evaluate
from nimbus_api.models import Message, SendAttempt
from tests.alerts.conftest import World
from tests.conftest import Tenant, TenantFactory, account_payload

Sm = async_sessionmaker[AsyncSession]


async def _messages(
    sm: Sm, world: World, workspace_id: uuid.UUID, account_id: uuid.UUID, sent: list[datetime | None]
) -> list[uuid.UUID]:
    """One message per entry (its ``sent_at``; None: still queued), each of its own enrollment."""
    ids = []
    for sent_at in sent:
        campaign_id, contact_id, enrollment_id = await world.enrollment(workspace_id)
        async with sm() as session, session.begin():
            message = Message(
                enrollment_id=enrollment_id,
                workspace_id=workspace_id,
                campaign_id=campaign_id,
                contact_id=contact_id,
                account_id=account_id,
                step=0,
                state="sent" if sent_at else "queued",
                to_email="p@example.org",
                subject="s",
                message_id_header=f"<{secrets.token_hex(8)}@nimbus.test>",
                sent_at=sent_at,
            )
            session.add(message)
            await session.flush()
            ids.append(message.id)
    return ids


async def _attempts(
    sm: Sm, message_id: uuid.UUID, account_id: uuid.UUID, rows: list[tuple[str, str, datetime]]
) -> None:
    async with sm() as session, session.begin():
        for outcome, code, at in rows:
            session.add(
                SendAttempt(
                    message_id=message_id,
                    account_id=account_id,
                    outcome=outcome,
                    error_code=code,
                    started_at=at,
                    finished_at=at,
                )
            )


async def test_the_figures_of_one_inbox_over_24_hours_and_7_days(
    tenant: Tenant, world: World, sessionmaker: Sm
) -> None:
    ws = tenant.workspace_id
    now = datetime.now(UTC)
    account, domain = await world.inbox(
        ws, overall_score=72.5, reputation_score=64.0, bounce_rate_7d=1.25, complaint_rate_7d=0.1, current_stage=3
    )
    neighbour, _ = await world.inbox(ws, domain_id=domain)
    h = timedelta(hours=1)
    ids = await _messages(
        sessionmaker,
        world,
        ws,
        account,
        [now - h, now - 2 * h, now - 3 * h, now - 30 * h, now - 50 * h, now - 8 * 24 * h, None],
    )
    await _attempts(
        sessionmaker,
        ids[-1],
        account,
        [
            ("transient", "smtp.connection_refused", now - 2 * h),  # 24 h, a connection failure
            ("failed", "smtp.recipient_rejected", now - 3 * h),  # 24 h, the session worked
            ("unknown", "smtp.timeout", now - 4 * h),  # 24 h, after the dot: not a connection failure
            ("credential", "smtp.auth_failed", now - 72 * h),  # 7 d, a connection failure
            ("transient", "smtp.throttled", now - 100 * h),  # 7 d
            ("transient", "smtp.connection_refused", now - 9 * 24 * h),  # outside both
        ],
    )
    # the neighbour's traffic is not this inbox's
    other = await _messages(sessionmaker, world, ws, neighbour, [now - h, now - h])
    await _attempts(sessionmaker, other[0], neighbour, [("transient", "smtp.connection_refused", now - h)])
    await world.sync_row(
        account,
        status="failing",
        last_success_at=now - timedelta(seconds=600),
        last_poll_at=now - timedelta(seconds=30),
        consecutive_failures=2,
        last_error_code="imap.connection_refused",
        failing_since=now - timedelta(seconds=300),
    )
    await world.set_domain(domain, dns_status="warn", blocklist_status="clean", health_checked_at=now - h)

    r = await tenant.client.get(f"/v1/email-accounts/{account}/monitoring")
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["account_id"] == str(account)
    assert m["score"] == {
        "overall_score": 72.5,
        "reputation_score": 64.0,
        "current_stage": 3,
        "warmup_progress": 0.0,
        "bounce_rate_7d": 1.25,
        "complaint_rate_7d": 0.1,
        "rates_window": "7d",
        "cooldown_until": None,
        "components": None,
    }
    day, week = m["sends"]
    assert (day["window"], week["window"]) == ("24h", "7d")
    assert datetime.fromisoformat(m["generated_at"]) - datetime.fromisoformat(day["since"]) == timedelta(hours=24)
    assert datetime.fromisoformat(m["generated_at"]) - datetime.fromisoformat(week["since"]) == timedelta(days=7)
    assert (day["attempts"], day["accepted"], day["success_rate"]) == (6, 3, 50.0)
    assert day["not_accepted"] == {"transient": 1, "failed": 1, "unknown": 1}
    assert (week["attempts"], week["accepted"], week["success_rate"]) == (10, 5, 50.0)
    assert week["not_accepted"] == {"transient": 2, "failed": 1, "unknown": 1, "credential": 1}
    c_day, c_week = m["smtp_connections"]
    assert (c_day["window"], c_day["attempts"], c_day["failures"], c_day["success_rate"]) == ("24h", 6, 1, 83.33)
    assert c_day["failures_by_code"] == {"smtp.connection_refused": 1}
    assert (c_week["window"], c_week["attempts"], c_week["failures"], c_week["success_rate"]) == ("7d", 10, 2, 80.0)
    assert c_week["failures_by_code"] == {"smtp.connection_refused": 1, "smtp.auth_failed": 1}

    sync = m["sync"]
    assert (sync["configured"], sync["status"], sync["consecutive_failures"], sync["last_error_code"]) == (
        True,
        "failing",
        2,
        "imap.connection_refused",
    )
    assert 600 <= sync["lag_seconds"] < 660
    assert m["dns"]["domain_id"] == str(domain) and m["dns"]["status"] == "warn" and m["dns"]["records"] == []
    assert datetime.fromisoformat(m["dns"]["checked_at"]) == now - h
    assert (m["blocklist"]["status"], m["blocklist"]["listings"]) == ("clean", None)
    assert m["active_alerts"] == []

    # An inbox with nothing: zero attempts and no rate (not a division by zero), no sync.
    empty = (await tenant.client.get(f"/v1/email-accounts/{(await world.inbox(ws))[0]}/monitoring")).json()
    assert [(w["attempts"], w["success_rate"]) for w in empty["sends"]] == [(0, None), (0, None)]
    assert [(w["attempts"], w["success_rate"]) for w in empty["smtp_connections"]] == [(0, None), (0, None)]
    assert (empty["sync"]["configured"], empty["sync"]["lag_seconds"]) == (False, None)


async def test_a_connected_inbox_shows_dns_per_record_and_its_active_alerts(
    tenant: Tenant, world: World, sessionmaker: Sm
) -> None:
    created = await tenant.client.post("/v1/email-accounts", json=account_payload(imap=None))
    assert created.status_code == 201, created.text
    account = uuid.UUID(created.json()["id"])
    domain_id = (await tenant.client.get(f"/v1/email-accounts/{account}/monitoring")).json()["dns"]["domain_id"]
    await world.set_account(account, overall_score=12.0)
    await world.set_domain(uuid.UUID(domain_id), blocklist_status="listed")
    async with sessionmaker() as session, session.begin():
        await evaluate(session, workspace_id=tenant.workspace_id)

    m = (await tenant.client.get(f"/v1/email-accounts/{account}/monitoring")).json()
    records = {r["record"]: r for r in m["dns"]["records"]}
    assert set(records) == {"mx", "spf", "dkim", "dmarc"}
    assert {r["status"] for r in records.values()} == {"pass"}  # the mail world's domains are in order
    assert {r["source"] for r in records.values()} == {"verification"}
    assert all(r["checked_at"] for r in records.values())
    assert m["blocklist"]["status"] == "listed"
    assert sorted((a["kind"], a["subject_id"]) for a in m["active_alerts"]) == sorted(
        [("score_below", str(account)), ("listed", domain_id)]
    )


async def test_another_workspace_s_inbox_is_not_found(make_tenant: TenantFactory, world: World) -> None:
    path = "/v1/email-accounts/{id}/monitoring"
    a, b = await make_tenant(), await make_tenant()
    account, _ = await world.inbox(a.workspace_id)
    r = await b.client.get(path.format(id=account))
    assert (r.status_code, r.json()["code"]) == (404, "email_account.not_found")
    assert (await b.client.get(path.format(id=uuid.uuid4()))).status_code == 404
    assert (await a.client.get(path.format(id=account))).status_code == 200
