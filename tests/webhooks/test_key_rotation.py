"""A data-key rotation re-encrypts webhook signing secrets under the new key (audited), then retires the old."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials import rotation
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit import crypto
from nimbus_api.models import CredentialAccess, DataKey, WebhookSecret
from tests.conftest import Tenant
from tests.webhooks.conftest import HOOKS_ZONE


async def test_a_rotation_moves_webhook_secrets_to_the_new_key_and_retires_the_old(
    closed: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    r = await closed.client.post("/v1/webhook-endpoints", json={"url": f"https://public.{HOOKS_ZONE}/x"})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]

    async with sessionmaker() as session:
        before = await session.scalar(
            select(WebhookSecret).where(WebhookSecret.endpoint_id == uuid.UUID(r.json()["id"]))
        )
        assert before is not None
        old_key, old_ciphertext = before.data_key_id, before.ciphertext

    result = await rotation.rotate_data_key(sessionmaker, vault, closed.workspace_id)
    assert result.retired == 1 and result.reencrypted >= 1

    async with sessionmaker() as session:
        row = await session.scalar(select(WebhookSecret).where(WebhookSecret.endpoint_id == uuid.UUID(r.json()["id"])))
        assert row is not None
        assert row.data_key_id == result.data_key_id != old_key and row.ciphertext != old_ciphertext
        key = await session.get_one(DataKey, row.data_key_id)
        assert crypto.decrypt(vault.material(key), row.ciphertext) == secret
        retired = await session.get_one(DataKey, old_key)
        assert retired.state == "retired" and retired.wrapped_key is None
        audit = list(
            await session.scalars(
                select(CredentialAccess).where(
                    CredentialAccess.webhook_endpoint_id == uuid.UUID(r.json()["id"]),
                    CredentialAccess.purpose == "key_rotation",
                )
            )
        )
        assert len(audit) == 1 and audit[0].credential_kind == "webhook_secret"

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
