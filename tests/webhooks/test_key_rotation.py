"""A data-key rotation never erases a key a webhook signing secret still needs."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials import rotation
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit import crypto
from nimbus_api.models import DataKey, WebhookSecret
from tests.conftest import Tenant
from tests.webhooks.conftest import HOOKS_ZONE


async def test_the_key_of_a_webhook_secret_keeps_opening_after_a_rotation(
    closed: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    r = await closed.client.post("/v1/webhook-endpoints", json={"url": f"https://public.{HOOKS_ZONE}/x"})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]

    result = await rotation.rotate_data_key(sessionmaker, vault, closed.workspace_id)
    assert result.retired == 0, "the old key is still named by the webhook secret"

    async with sessionmaker() as session:
        row = await session.scalar(select(WebhookSecret).where(WebhookSecret.endpoint_id == uuid.UUID(r.json()["id"])))
        assert row is not None
        key = await session.get_one(DataKey, row.data_key_id)
        assert key.state == "retiring" and key.wrapped_key is not None
        assert crypto.decrypt(vault.material(key), row.ciphertext) == secret

    rotated = await closed.client.post(f"/v1/webhook-endpoints/{r.json()['id']}/rotate-secret")
    async with sessionmaker() as session:
        current = await session.scalar(
            select(WebhookSecret).where(
                WebhookSecret.endpoint_id == uuid.UUID(r.json()["id"]), WebhookSecret.expires_at.is_(None)
            )
        )
        assert current is not None and current.data_key_id == result.data_key_id, "new secrets use the active key"
        active = await session.get_one(DataKey, current.data_key_id)
        assert crypto.decrypt(vault.material(active), current.ciphertext) == rotated.json()["secret"]
