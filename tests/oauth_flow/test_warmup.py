"""The warmup exchange between two OAuth inboxes: each warmup send logs in with the inbox's access token
(XOAUTH2/OAUTHBEARER, checked by the mail world's SMTP server), not with a password it does not have."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import EmailAccount
from nimbus_api.warmup import planner, sender
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
