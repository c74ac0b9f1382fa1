"""A data-key rotation while a connect is under way: the pending attempt's sealed PKCE verifier is
re-encrypted under the new key with the workspace's other secrets, so the browser that comes back after
the rotation completes the connect; an attempt that can no longer complete keeps nothing sealed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials import rotation
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.db import utcnow
from nimbus_api.models import DataKey, OAuthAttempt
from tests.conftest import Tenant
from tests.oauth_flow.conftest import FRONTEND_URL, consent, landed, new_mailbox
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer


async def _attempt(sessionmaker: async_sessionmaker[AsyncSession], attempt_id: str) -> OAuthAttempt:
    async with sessionmaker() as session:
        return await session.get_one(OAuthAttempt, uuid.UUID(attempt_id))


async def test_a_connect_started_before_a_key_rotation_completes_after_it(
    tenant: Tenant,
    http: httpx.AsyncClient,
    oauth: OAuthTestServer,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:
    email = new_mailbox(mail_world, oauth)
    r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL, "login_hint": email})
    assert r.status_code == 201, r.text
    started = r.json()
    # another attempt that expired unused: nothing of it is worth keeping under any key
    r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL})
    expired_id = r.json()["attempt_id"]
    async with sessionmaker() as session, session.begin():
        (await session.get_one(OAuthAttempt, uuid.UUID(expired_id))).expires_at = utcnow() - timedelta(seconds=1)
    sealed_under = (await _attempt(sessionmaker, started["attempt_id"])).data_key_id

    result = await rotation.rotate_data_key(sessionmaker, vault, tenant.workspace_id)

    assert result.retired == 1, result
    async with sessionmaker() as session:
        old = await session.get_one(DataKey, sealed_under)
    assert old.state == "retired" and old.wrapped_key is None  # the old key is gone for good
    pending = await _attempt(sessionmaker, started["attempt_id"])
    assert pending.data_key_id == result.data_key_id and pending.verifier_ciphertext
    assert (await _attempt(sessionmaker, expired_id)).verifier_ciphertext == b""

    back = landed(await http.get(await consent(oauth, started["authorize_url"])))

    assert "account_id" in back and "error" not in back, back
    account = (await tenant.client.get(f"/v1/email-accounts/{back['account_id']}")).json()
    assert account["email"] == email and account["auth_method"] == "oauth2"
    assert (await _attempt(sessionmaker, started["attempt_id"])).verifier_ciphertext == b""
    async with sessionmaker() as session:
        states = list(await session.scalars(select(DataKey.state).where(DataKey.workspace_id == tenant.workspace_id)))
    assert sorted(states) == ["active", "retired"]

    # a pending attempt naming a key that is already retired (sealed before rotations resealed attempts)
    # can never open: the next rotation erases its verifier instead of failing on it
    r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL})
    stranded = r.json()["attempt_id"]
    async with sessionmaker() as session, session.begin():
        (await session.get_one(OAuthAttempt, uuid.UUID(stranded))).data_key_id = sealed_under
    again = await rotation.rotate_data_key(sessionmaker, vault, tenant.workspace_id)
    assert again.retired == 1 and (await _attempt(sessionmaker, stranded)).verifier_ciphertext == b""
