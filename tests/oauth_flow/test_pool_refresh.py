"""An OAuth inbox keeps sending across a token refresh: its queued messages go out over the pooled SMTP
connections while the access token expires at the provider; a connection still logged in goes on, a new
login (the server ended the other session) is refused with the old token, the token is refreshed once, and
every message reaches the server exactly once. The sync likewise reads mail that arrived after expiry."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections import Counter

import httpx
import pytest
from aiosmtpd.smtp import Envelope
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import EmailAccount
from nimbus_api.sending.sender import SenderDeps, run_inbox
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.sync.runner import SyncRunner
from tests.conftest import Tenant
from tests.oauth_flow.conftest import connected, lone_sync_runner, warmed
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer
from tests.sync.conftest import inbound, mail, sync_row


def _sink(world: MailWorld, sender: str, since: int) -> Counter[str]:
    """How many times each recipient got a message from ``sender`` at the SMTP server (after ``since``)."""
    return Counter(r for m in world.smtp.messages[since:] if (m.mail_from or "").lower() == sender for r in m.rcpt_tos)


@pytest.mark.parametrize("hang_ups", [1, 2])
async def test_queued_mail_goes_out_exactly_once_across_a_token_refresh_on_pooled_connections(
    hang_ups: int,
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    campaigns: Campaigns,
    deps: SenderDeps,
    pool: SmtpPool,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world)
    await warmed(sessionmaker, account_id)
    async with sessionmaker() as session, session.begin():
        (await session.get_one(EmailAccount, account_id)).max_connections = 2
    leads = [f"pool{i}-{secrets.token_hex(3)}@example.org" for i in range(12)]
    campaign_id = await campaigns.campaign([account_id], leads)
    await campaigns.dispatch(campaign_id)
    refreshes, logins = oauth.counters["refresh_token"], len(mail_world.smtp.oauth_attempts)
    expired_at: list[int] = []
    since = len(mail_world.smtp.messages)

    deliver = mail_world.smtp.deliver
    assert deliver is not None

    async def expire_mid_run(envelope: Envelope) -> None:
        await deliver(envelope)
        await asyncio.sleep(0.05)  # a server taking its time: both lanes are sending at once
        sessions = sum(ok for _, user, ok in mail_world.smtp.oauth_attempts[logins:] if user == email)
        if not expired_at and sessions == 2:
            # both lanes logged in and sending: the provider expires the token, and the server ends one of the
            # two sessions at its next RSET (the other stays logged in with the old token and goes on), or both
            oauth.expire_access_tokens()
            mail_world.smtp.hang_up_on_rset = hang_ups
            expired_at.append(len(mail_world.smtp.oauth_attempts))

    mail_world.smtp.deliver = expire_mid_run
    try:
        report = await run_inbox(dataclasses.replace(deps, commit_every=2, batch=2), account_id, max_seconds=30)
    finally:
        mail_world.smtp.deliver = deliver
        mail_world.smtp.hang_up_on_rset = 0

    assert report.outcomes["sent"] == 12 and report.stopped_reason is None, report
    assert _sink(mail_world, email, since) == Counter(dict.fromkeys(leads, 1))  # every message once, none twice
    assert expired_at and pool.metrics.rset_failed == hang_ups  # the sessions the server ended
    assert oauth.counters["refresh_token"] == refreshes + 1
    mine = [ok for _, user, ok in mail_world.smtp.oauth_attempts[logins:] if user == email]
    # two sessions; then a new login refused with the old token, and (unless the lane went on over the
    # session still open, now idle) one with the refreshed token
    # two sessions; then each session the server ended logs in again: refused with the old token (the
    # first one to try; a lane that asks while the refresh runs waits for it), then with the new one
    assert mine[:2] == [True, True] and mine[2] is False, mine
    assert mine[2:].count(True) == hang_ups and 1 <= mine[2:].count(False) <= hang_ups, mine
    assert pool.metrics.connections_opened == 2 + hang_ups
    messages = await campaigns.messages(campaign_id)
    assert sorted(m.state for m in messages) == ["sent"] * 12
    account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
    assert account["disabled_at"] is None and account["is_active"] is True, account


async def test_the_sync_reads_new_mail_across_a_token_refresh(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    app_state: AppState,
    vault: Vault,
    settings: Settings,
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world)
    runner = await lone_sync_runner(
        sessionmaker, tenant.workspace_id, net=app_state.verifier.net, vault=vault, settings=settings
    )
    try:
        await runner.lease_round()
        mail_world.dovecot.deliver_lmtp(email.lower(), mail("before"))
        await runner.poll_now(account_id)
        assert [m.subject for m in await inbound(sessionmaker, account_id)] == ["before"]

        # the token expires at the provider: the session logged in with it goes on reading
        oauth.expire_access_tokens()
        refreshes = oauth.counters["refresh_token"]
        mail_world.dovecot.deliver_lmtp(email.lower(), mail("after expiry"))
        await runner.poll_now(account_id)
        assert [m.subject for m in await inbound(sessionmaker, account_id)] == ["before", "after expiry"]
        assert oauth.counters["refresh_token"] == refreshes

        # the server ends the session; the next poll logs in again: refused, refreshed once, read
        mail_world.dovecot.doveadm("kick", email.lower())
        mail_world.dovecot.deliver_lmtp(email.lower(), mail("after refresh"))
        await _poll_until(runner, sessionmaker, account_id, 3)
        assert [m.subject for m in await inbound(sessionmaker, account_id)] == [
            "before",
            "after expiry",
            "after refresh",
        ]
        assert oauth.counters["refresh_token"] == refreshes + 1
        assert (await sync_row(sessionmaker, account_id)).status == "ok"
        account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
        assert account["disabled_at"] is None
    finally:
        await runner.stop()


async def _poll_until(
    runner: SyncRunner, sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID, count: int
) -> None:
    """Poll as the runner's schedule would, a few times at most, until ``count`` messages are stored."""
    for _ in range(3):
        await runner.poll_now(account_id)
        if len(await inbound(sessionmaker, account_id)) >= count:
            return


async def test_a_token_endpoint_outage_at_a_refresh_defers_the_mail_and_never_pauses_the_inbox(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    campaigns: Campaigns,
    deps: SenderDeps,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The refused login needs a refresh and the provider's token endpoint is down (503): nothing is wrong
    with the grant nor the inbox, so the inbox is not paused; the mail waits, and goes out once after."""
    email, account_id = await connected(tenant, http, oauth, mail_world)
    await warmed(sessionmaker, account_id)
    leads = [f"outage{i}-{secrets.token_hex(3)}@example.org" for i in range(3)]
    campaign_id = await campaigns.campaign([account_id], leads)
    await campaigns.dispatch(campaign_id)
    since = len(mail_world.smtp.messages)
    oauth.expire_access_tokens()
    oauth.refresh_status = 503

    report = await run_inbox(deps, account_id, max_seconds=10)

    assert report.outcomes["sent"] == 0 and report.stopped_reason is None, report
    account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
    assert (account["disabled_at"], account["disabled_reason"]) == (None, None), account
    messages = await campaigns.messages(campaign_id)
    assert len(messages) == 3 and not any(m.state == "sent" for m in messages)

    oauth.refresh_status = None  # the provider is back
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE messages SET retry_at = now() - interval '1 second'"
                " WHERE campaign_id = :c AND retry_at IS NOT NULL"
            ),
            {"c": campaign_id},
        )
    again = await run_inbox(deps, account_id, max_seconds=10)
    assert again.outcomes["sent"] == 3, again
    assert _sink(mail_world, email, since) == Counter(dict.fromkeys(leads, 1))


async def test_a_token_endpoint_outage_at_a_sync_refresh_is_a_transient_failure(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    app_state: AppState,
    vault: Vault,
    settings: Settings,
) -> None:
    email, account_id = await connected(tenant, http, oauth, mail_world)
    runner = await lone_sync_runner(
        sessionmaker, tenant.workspace_id, net=app_state.verifier.net, vault=vault, settings=settings
    )
    try:
        await runner.lease_round()
        await runner.poll_now(account_id)
        await runner.book.discard(account_id)
        oauth.expire_access_tokens()
        oauth.refresh_status = 503
        mail_world.dovecot.deliver_lmtp(email.lower(), mail("during the outage"))
        await runner.poll_now(account_id)
        assert (await sync_row(sessionmaker, account_id)).last_error_code == "imap.connection_refused"
        account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
        assert account["disabled_reason"] is None

        oauth.refresh_status = None
        await runner.poll_now(account_id)
        assert [m.subject for m in await inbound(sessionmaker, account_id)] == ["during the outage"]
        assert (await sync_row(sessionmaker, account_id)).status == "ok"
    finally:
        await runner.stop()
