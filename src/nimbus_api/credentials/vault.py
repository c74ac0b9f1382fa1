"""The only place where stored secrets (mailbox passwords, SES API keys, webhook signing secrets) are encrypted
and decrypted.

Every ``reveal`` writes a ``credential_access_log`` row (workspace, account, actor, purpose, time) in
the caller's transaction, so a decrypt that is committed is a decrypt that is audited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.kit import crypto
from nimbus_api.kit.crypto import MasterKeyring, Secret
from nimbus_api.models import Credential, CredentialAccess, DataKey, ProviderHook, WebhookSecret

CredentialKind = Literal["smtp_password", "imap_password", "ses_api", "oauth_access_token", "oauth_refresh_token"]
"""``ses_api``: an account's Amazon SES API key pair (access key id and secret, as one JSON secret).
``oauth_access_token`` / ``oauth_refresh_token``: an OAuth account's tokens (``oauth.tokens``)."""
Purpose = Literal[
    "verify",
    "send",
    "sync",
    "key_rotation",
    "support",
    "webhook_signing",
    "provider_quota",
    "warmup",
    "oauth_refresh",
    "provider_hook",
    "oauth_revoke",
]
AuditedKind = Literal[
    "smtp_password",
    "imap_password",
    "ses_api",
    "oauth_access_token",
    "oauth_refresh_token",
    "webhook_secret",
    "provider_hook_key",
]


@dataclass(frozen=True)
class Actor:
    """Who asks for a decrypt: an API key (``api_key:<id>``) or a system task (``system:<task>``)."""

    value: str

    @classmethod
    def api_key(cls, key_id: uuid.UUID) -> Actor:
        return cls(f"api_key:{key_id}")

    @classmethod
    def system(cls, task: str) -> Actor:
        return cls(f"system:{task}")


class Vault:
    def __init__(self, keyring: MasterKeyring) -> None:
        self.keyring = keyring
        self._unwrapped: dict[uuid.UUID, bytes] = {}

    # --- data keys --------------------------------------------------------------------------
    async def create_data_key(self, session: AsyncSession, workspace_id: uuid.UUID) -> DataKey:
        wrapped, master_id = self.keyring.wrap(crypto.new_data_key())
        key = DataKey(workspace_id=workspace_id, state="active", wrapped_key=wrapped, master_key_id=master_id)
        session.add(key)
        await session.flush()
        return key

    async def active_data_key(self, session: AsyncSession, workspace_id: uuid.UUID) -> DataKey:
        key = await session.scalar(
            select(DataKey).where(DataKey.workspace_id == workspace_id, DataKey.state == "active")
        )
        if key is None:
            key = await self.create_data_key(session, workspace_id)
        return key

    def material(self, key: DataKey) -> bytes:
        cached = self._unwrapped.get(key.id)
        if cached is None:
            if key.wrapped_key is None:
                raise crypto.KeyringError("data key is retired")
            cached = self.keyring.unwrap(key.wrapped_key)
            self._unwrapped[key.id] = cached
        return cached

    # --- secrets ----------------------------------------------------------------------------
    async def store(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID,
        account_id: uuid.UUID,
        kind: CredentialKind,
        secret: Secret,
    ) -> Credential:
        """Encrypt ``secret`` under the workspace's active data key, replacing any earlier one."""
        key = await self.active_data_key(session, workspace_id)
        ciphertext = crypto.encrypt(self.material(key), secret.reveal())
        credential = await session.scalar(
            select(Credential).where(Credential.account_id == account_id, Credential.kind == kind)
        )
        if credential is None:
            credential = Credential(
                workspace_id=workspace_id,
                account_id=account_id,
                kind=kind,
                data_key_id=key.id,
                ciphertext=ciphertext,
            )
            session.add(credential)
        else:
            credential.data_key_id = key.id
            credential.ciphertext = ciphertext
        await session.flush()
        return credential

    async def seal(self, session: AsyncSession, workspace_id: uuid.UUID, secret: Secret) -> tuple[uuid.UUID, bytes]:
        """Encrypt a secret that is not a mailbox's (a webhook signing secret) under the workspace's active
        data key; returns (data key id, ciphertext) for the caller's row, which must name that key."""
        key = await self.active_data_key(session, workspace_id)
        return key.id, crypto.encrypt(self.material(key), secret.reveal())

    async def unseal(self, session: AsyncSession, data_key_id: uuid.UUID, ciphertext: bytes) -> Secret:
        """Open what ``seal`` closed for a short-lived value that is no credential (an OAuth connect
        attempt's PKCE verifier, useless without the one-time code only the provider's redirect carries):
        not audited, unlike every credential decrypt."""
        key = await session.get_one(DataKey, data_key_id)
        return Secret(crypto.decrypt(self.material(key), ciphertext))

    async def remove(self, session: AsyncSession, account_id: uuid.UUID, kind: CredentialKind) -> None:
        await session.execute(delete(Credential).where(Credential.account_id == account_id, Credential.kind == kind))

    async def kinds_set(self, session: AsyncSession, account_ids: list[uuid.UUID]) -> set[tuple[uuid.UUID, str]]:
        """Which (account, kind) pairs have a stored secret: for ``password_set`` without decrypting."""
        if not account_ids:
            return set()
        rows = await session.execute(
            select(Credential.account_id, Credential.kind).where(Credential.account_id.in_(account_ids))
        )
        return {(row[0], row[1]) for row in rows}

    async def _open(
        self, session: AsyncSession, row: Credential | WebhookSecret | ProviderHook, access: CredentialAccess
    ) -> Secret:
        """Decrypt ``row`` and add its audit row to the caller's transaction."""
        key = await session.get_one(DataKey, row.data_key_id)
        if key.wrapped_key is None and key.id not in self._unwrapped:
            # A rotation moved this secret to a newer key and retired this one after the row was read
            # (a send in flight): read the row again, it now names the key that opens it.
            await session.refresh(row)
            key = await session.get_one(DataKey, row.data_key_id)
        session.add(access)
        await session.flush()
        assert row.ciphertext is not None  # a provider hook without a signing key is never opened
        return Secret(crypto.decrypt(self.material(key), row.ciphertext))

    async def reveal(self, session: AsyncSession, credential: Credential, *, actor: Actor, purpose: Purpose) -> Secret:
        access = CredentialAccess(
            workspace_id=credential.workspace_id,
            account_id=credential.account_id,
            credential_kind=credential.kind,
            actor=actor.value,
            purpose=purpose,
        )
        return await self._open(session, credential, access)

    async def reveal_for_account(
        self,
        session: AsyncSession,
        account_id: uuid.UUID,
        kind: CredentialKind,
        *,
        actor: Actor,
        purpose: Purpose,
    ) -> Secret | None:
        credential = await session.scalar(
            select(Credential).where(Credential.account_id == account_id, Credential.kind == kind)
        )
        if credential is None:
            return None
        return await self.reveal(session, credential, actor=actor, purpose=purpose)

    async def reveal_webhook_secret(
        self, session: AsyncSession, row: WebhookSecret, *, actor: Actor, purpose: Purpose
    ) -> Secret:
        """Open what ``seal`` closed for a webhook endpoint, audited like ``reveal``."""
        access = CredentialAccess(
            workspace_id=row.workspace_id,
            webhook_endpoint_id=row.endpoint_id,
            credential_kind="webhook_secret",
            actor=actor.value,
            purpose=purpose,
        )
        return await self._open(session, row, access)

    # --- secrets held for a while by another row (a fleet import's rows) ------------------------
    async def seal_many(
        self, session: AsyncSession, workspace_id: uuid.UUID, secrets: list[Secret | None]
    ) -> tuple[uuid.UUID, list[bytes | None]]:
        """``seal`` for many secrets under one read of the active data key (None stays None)."""
        key = await self.active_data_key(session, workspace_id)
        material = self.material(key)
        return key.id, [crypto.encrypt(material, s.reveal()) if s is not None else None for s in secrets]

    async def reveal_sealed(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID,
        data_key_id: uuid.UUID,
        ciphertext: bytes,
        kind: CredentialKind,
        actor: Actor,
        purpose: Purpose,
    ) -> tuple[Secret, CredentialAccess]:
        """Open what ``seal``/``seal_many`` closed for a mailbox not saved yet, audited like ``reveal``; the
        audit row is returned without an account so the caller can name the account it then creates."""
        key = await session.get_one(DataKey, data_key_id)
        access = CredentialAccess(
            workspace_id=workspace_id, account_id=None, credential_kind=kind, actor=actor.value, purpose=purpose
        )
        session.add(access)
        await session.flush()
        return Secret(crypto.decrypt(self.material(key), ciphertext)), access

    async def reveal_provider_hook_key(
        self, session: AsyncSession, row: ProviderHook, *, actor: Actor, purpose: Purpose
    ) -> Secret:
        """Open a provider hook's signing key (``seal``ed at create), audited like ``reveal``; the actor
        names the hook (``system:provider_hook:<id>``), the row has no account or endpoint."""
        assert row.data_key_id is not None
        access = CredentialAccess(
            workspace_id=row.workspace_id, credential_kind="provider_hook_key", actor=actor.value, purpose=purpose
        )
        return await self._open(session, row, access)

    def forget(self, data_key_id: uuid.UUID) -> None:
        self._unwrapped.pop(data_key_id, None)
