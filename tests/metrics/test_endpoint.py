"""``GET /metrics`` on the API: who may read it, what real sends and deliveries add, what the PostgreSQL
gauges say, and that no label carries an address, an id or a secret."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import EmailAccount, MailboxSync, Message
from nimbus_api.sending.sender import SenderDeps, run_inbox
from tests.conftest import account_payload
from tests.metrics.conftest import TOKEN, Samples, scrape, value
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.smtp_server import TestSmtpServer

ALLOWED_LABELS = {"outcome", "state", "status", "quantile", "le"}


async def test_metrics_is_absent_without_a_token_setting(http: httpx.AsyncClient) -> None:
    r = await http.get("/metrics")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


async def test_the_token_is_required_and_checked(metrics_http: httpx.AsyncClient) -> None:
    missing = await metrics_http.get("/metrics")
    wrong = await metrics_http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    basic = await metrics_http.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    for r in (missing, wrong, basic):
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "metrics.unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in r.text
    right = await metrics_http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert "# TYPE nimbus_sends_total counter" in right.text
    assert "# TYPE nimbus_health_recompute_seconds histogram" in right.text


async def test_real_sends_are_counted_by_outcome_with_latency(
    campaigns: Campaigns,
    deps: SenderDeps,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics_http: httpx.AsyncClient,
) -> None:
    inbox = await campaigns.inbox()
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, inbox)
    assert account.smtp_username
    unknown_user = f"nobody-{secrets.token_hex(3)}@example.org"
    server = TestSmtpServer(
        users={account.smtp_username: "s3cret"},
        tls_context=mail_world.certs.server_context(),
        refuse={unknown_user: "550 5.1.1 No such user"},
    )
    await server.start()
    try:
        await campaigns.point_at(inbox, server.port)
        recipients = [f"lead{i}-{secrets.token_hex(3)}@example.org" for i in range(3)] + [unknown_user]
        campaign_id = await campaigns.campaign([inbox], recipients)
        before = await scrape(metrics_http)
        await campaigns.dispatch(campaign_id)
        await run_inbox(deps, inbox, max_seconds=10)
        after = await scrape(metrics_http)
    finally:
        await server.stop()
    states = sorted(m.state for m in await campaigns.messages(campaign_id))
    assert states == ["failed", "sent", "sent", "sent"]
    assert len(server.messages) == 3

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("nimbus_sends_total", outcome="sent") == 3
    assert delta("nimbus_sends_total", outcome="hard_bounce") == 1
    assert delta("nimbus_sends_total", outcome="transient") == 0
    assert delta("nimbus_send_seconds_count") == 4  # every SMTP transaction, the refused one too
    assert delta("nimbus_send_seconds_sum") > 0
    _assert_bounded_labels(after, [account.email, unknown_user, str(inbox), str(account.workspace_id), *recipients])


async def test_postgres_gauges_match_the_rows(
    campaigns: Campaigns, sessionmaker: async_sessionmaker[AsyncSession], metrics_http: httpx.AsyncClient
) -> None:
    inbox = await campaigns.inbox()
    r = await campaigns.tenant.client.post("/v1/email-accounts", json=account_payload())  # with IMAP: a sync row
    assert r.status_code == 201, r.text
    with_imap = uuid.UUID(r.json()["id"])
    campaign_id = await campaigns.campaign([inbox], [f"q{i}-{secrets.token_hex(3)}@example.org" for i in range(5)])
    before = await scrape(metrics_http)
    await campaigns.dispatch(campaign_id)  # five queued messages, nothing sent
    async with sessionmaker() as session, session.begin():
        one = await session.scalar(select(Message.id).where(Message.campaign_id == campaign_id).limit(1))
        await session.execute(update(Message).where(Message.id == one).values(state="deferred"))
        # One mailbox far behind: its last success three hours ago.
        synced = with_imap
        await session.execute(
            update(MailboxSync)
            .where(MailboxSync.account_id == synced)
            .values(last_success_at=datetime.now(UTC) - timedelta(hours=3), status="ok")
        )
    samples = await scrape(metrics_http)
    async with sessionmaker() as session:
        counts = {
            row[0]: row[1] for row in await session.execute(select(Message.state, func.count()).group_by(Message.state))
        }
        rows = (await session.execute(select(MailboxSync.last_success_at, MailboxSync.created_at))).all()
        by_status = {
            row[0]: row[1]
            for row in await session.execute(select(MailboxSync.status, func.count()).group_by(MailboxSync.status))
        }
    now = datetime.now(UTC)
    assert value(samples, "nimbus_metrics_postgres_up") == 1
    for state in ("queued", "deferred", "leased"):
        assert value(samples, "nimbus_queue_messages", state=state) == counts.get(state, 0), state
    assert (
        value(samples, "nimbus_queue_messages", state="queued") - value(before, "nimbus_queue_messages", state="queued")
        == 4
    )
    assert (
        value(samples, "nimbus_queue_messages", state="deferred")
        - value(before, "nimbus_queue_messages", state="deferred")
        == 1
    )
    for status in ("pending", "ok", "failing"):
        assert value(samples, "nimbus_imap_mailboxes", status=status) == by_status.get(status, 0), status
    worst = max((now - (success or created)).total_seconds() for success, created in rows)
    assert worst >= 3 * 3600
    assert abs(value(samples, "nimbus_imap_sync_lag_seconds") - worst) < 5
    median = value(samples, "nimbus_imap_sync_lag_quantile_seconds", quantile="0.5")
    assert 0 <= median <= value(samples, "nimbus_imap_sync_lag_quantile_seconds", quantile="0.99") <= worst + 5


def _assert_bounded_labels(samples: Samples, forbidden: list[str]) -> None:
    """Our labels are a closed set of names with short, bounded values: never an address, an id or a secret
    (the client library's own ``python_*``/``process_*`` metrics label generations and versions)."""
    for name, labels in samples:
        for label, text in labels:
            assert all(f not in text for f in forbidden), (name, label, text)
            if not name.startswith("nimbus_"):
                continue
            assert label in ALLOWED_LABELS, (name, label)
            assert "@" not in text and len(text) <= 20, (name, label, text)
            assert all(f not in text for f in forbidden), (name, label, text)
            assert TOKEN not in text
