"""The warmup exchange between two OAuth inboxes: each warmup send logs in with the inbox's access token
(XOAUTH2/OAUTHBEARER, checked by the mail world's SMTP server), not with a password it does not have."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import EmailAccount, OAuthGrant, WarmupMessage
from nimbus_api.warmup import planner, receiver, sender
from nimbus_api.warmup.sender import WarmupDeps
from tests.conftest import Tenant
from tests.oauth_flow.conftest import connected
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer
from tests.warmup.conftest import isolate
from tests.warmup.conftest import make_deps as make_deps


async def test_warmup_sends_between_oauth_inboxes_log_in_with_their_tokens(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_deps: Callable[..., WarmupDeps],
) -> None:
    await isolate(sessionmaker)
    (a_email, a_id), (b_email, b_id) = [await connected(tenant, http, oauth, mail_world) for _ in range(2)]
    async with sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id.in_([a_id, b_id])).values(warmup_enabled=True))
    deps = make_deps(warmup_daily_limit=1, warmup_reply_share=0.0, warmup_flag_share=0.0)
    now = datetime.now(UTC).replace(hour=0, minute=5)
    async with sessionmaker() as session, session.begin():
        assert await planner.plan(session, planner.PlanConfig.of(deps.settings), now) == 2
    logins = len(mail_world.smtp.oauth_attempts)
    assert await sender.send_due(deps, now=now.replace(hour=23, minute=59)) == {"sent": 2}
    accepted = {user for _, user, ok in mail_world.smtp.oauth_attempts[logins:] if ok}
    assert accepted == {a_email.lower(), b_email.lower()}


async def test_a_token_endpoint_outage_leaves_received_warmup_mail_for_later(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_deps: Callable[..., WarmupDeps],
) -> None:
    """The recipient's token cannot be refreshed when its warmup mail is to be handled: the mail waits
    (not marked handled as if the inbox had no IMAP any more) and is handled once the endpoint answers."""
    await isolate(sessionmaker)
    (_, a_id), (_, b_id) = [await connected(tenant, http, oauth, mail_world) for _ in range(2)]
    async with sessionmaker() as session, session.begin():
        await session.execute(update(EmailAccount).where(EmailAccount.id.in_([a_id, b_id])).values(warmup_enabled=True))
    deps = make_deps(warmup_daily_limit=1, warmup_reply_share=0.0, warmup_flag_share=0.0)
    now = datetime.now(UTC).replace(hour=0, minute=5)
    async with sessionmaker() as session, session.begin():
        assert await planner.plan(session, planner.PlanConfig.of(deps.settings), now) == 2
    assert await sender.send_due(deps, now=now.replace(hour=23, minute=59)) == {"sent": 2}
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(WarmupMessage)
            .where(WarmupMessage.recipient_id == b_id)
            .values(received_at=datetime.now(UTC), landed="inbox")
        )
        # the access token is due: handling the inbox must refresh it first
        await session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.account_id == b_id)
            .values(access_expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    oauth.refresh_status = 503
    try:
        assert await receiver.handle_inbox(deps, b_id) == 0
    finally:
        oauth.refresh_status = None
    async with sessionmaker() as session:
        waiting = list(await session.scalars(select(WarmupMessage).where(WarmupMessage.recipient_id == b_id)))
    assert waiting and all(row.handled_at is None for row in waiting), "the mail waits for a token"
    assert await receiver.handle_inbox(deps, b_id) == len(waiting)
