"""The IMAP sync of an OAuth mailbox: it logs in with the token (XOAUTH2 against Dovecot), and a token the
server refuses (expired) is refreshed once and the poll logs in again; a dead grant fails the poll
without another call to the provider."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from tests.conftest import Tenant
from tests.oauth_flow.conftest import connected, lone_sync_runner
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer
from tests.sync.conftest import inbound, mail, sync_row


async def test_a_sync_refreshes_a_refused_token_once_and_reads_the_mailbox(
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
        mail_world.dovecot.deliver_lmtp(email.lower(), mail("first"))
        await runner.poll_now(account_id)
        assert [m.subject for m in await inbound(sessionmaker, account_id)] == ["first"]

        await runner.book.discard(account_id)  # the next poll logs in again
        oauth.expire_access_tokens()
        refreshes = oauth.counters["refresh_token"]
        mail_world.dovecot.deliver_lmtp(email.lower(), mail("second"))
        await runner.poll_now(account_id)
        assert oauth.counters["refresh_token"] == refreshes + 1
        assert [m.subject for m in await inbound(sessionmaker, account_id)] == ["first", "second"]
        assert (await sync_row(sessionmaker, account_id)).status == "ok"

        await runner.book.discard(account_id)
        oauth.revoke_user(email)
        await runner.poll_now(account_id)
        row = await sync_row(sessionmaker, account_id)
        assert row.last_error_code == "imap.auth_failed"
        assert oauth.counters["refresh_token"] == refreshes + 2  # the refused refresh
        account = (await tenant.client.get(f"/v1/email-accounts/{account_id}")).json()
        assert account["disabled_reason"] == "reauthorization_required"
        await runner.poll_now(account_id)
        assert oauth.counters["refresh_token"] == refreshes + 2  # not tried again
    finally:
        await runner.stop()
