"""Provider hooks: create (the token, shown once), list, read, delete, and find one by its token.

The token is 32 random bytes (base64url, 43 characters); only its SHA-256 is stored, unique, and the public
path is looked up by that digest (the equality is Postgres's, on the digest): the token in clear is never
stored, logged or compared. A Mailgun signing key is sealed by the vault under the workspace's data key; a
basic-auth password is kept as a salted scrypt digest (it is only checked); a SendGrid verification key is
public and stored as given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import ProviderHook, ProviderHookEvent
from nimbus_api.provider_hooks.errors import ProviderHookNotFound
from nimbus_api.provider_hooks.schemas import PROVIDERS, ProviderHookCreate, ProviderHookRead, SignatureScheme

TOKEN_BYTES = 32
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(stored: str, password: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        given = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(given, base64.b64decode(digest))


def scheme_of(row: ProviderHook) -> SignatureScheme:
    if row.provider == "ses":
        return "sns"
    if row.provider == "mailgun":
        return "mailgun_hmac"
    if row.public_key:
        return "sendgrid_ecdsa"
    if row.basic_username:
        return "basic_auth"
    return "token_only"


def to_read(row: ProviderHook) -> ProviderHookRead:
    return ProviderHookRead(
        id=row.id,
        provider=row.provider,
        description=row.description,
        signature=scheme_of(row),
        topic_arn=row.topic_arn,
        basic_auth_username=row.basic_username,
        subscription_confirmed_at=row.subscription_confirmed_at,
        last_received_at=row.last_received_at,
        created_at=row.created_at,
    )


async def create(
    session: AsyncSession, vault: Vault, workspace_id: uuid.UUID, body: ProviderHookCreate
) -> tuple[ProviderHook, str]:
    token = new_token()
    row = ProviderHook(
        workspace_id=workspace_id,
        provider=body.provider,
        token_hash=token_digest(token),
        description=body.description,
        topic_arn=body.topic_arn,
        public_key=body.public_key,
    )
    if body.basic_auth is not None:
        row.basic_username = body.basic_auth.username
        row.basic_password_hash = hash_password(body.basic_auth.password)
    if body.signing_key is not None:
        row.data_key_id, row.ciphertext = await vault.seal(session, workspace_id, Secret(body.signing_key))
    session.add(row)
    await session.flush()
    return row, token


async def get(session: AsyncSession, workspace_id: uuid.UUID, hook_id: uuid.UUID) -> ProviderHook:
    row = await session.scalar(
        select(ProviderHook).where(ProviderHook.id == hook_id, ProviderHook.workspace_id == workspace_id)
    )
    if row is None:
        raise ProviderHookNotFound()
    return row


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[ProviderHook], str | None]:
    stmt = select(ProviderHook).where(ProviderHook.workspace_id == workspace_id)
    return page_of(list(await session.scalars(paginate(stmt, ProviderHook.id, cursor, limit))), limit)


async def notifications_page(
    session: AsyncSession, workspace_id: uuid.UUID, hook_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[ProviderHookEvent], str | None]:
    """The hook's accepted reports, newest first (not the Mailgun tokens kept against replays)."""
    await get(session, workspace_id, hook_id)
    stmt = select(ProviderHookEvent).where(
        ProviderHookEvent.hook_id == hook_id,
        ProviderHookEvent.workspace_id == workspace_id,
        ProviderHookEvent.kind != "token",
    )
    return page_of(list(await session.scalars(paginate(stmt, ProviderHookEvent.id, cursor, limit))), limit)


async def remove(session: AsyncSession, workspace_id: uuid.UUID, hook_id: uuid.UUID) -> None:
    await get(session, workspace_id, hook_id)
    await session.execute(delete(ProviderHook).where(ProviderHook.id == hook_id))


async def by_token(session: AsyncSession, provider: str, token: str) -> ProviderHook:
    """The hook the public path names, else 404 (an unknown provider too)."""
    if provider not in PROVIDERS or not 16 <= len(token) <= 100:
        raise ProviderHookNotFound()
    digest = token_digest(token)
    row = await session.scalar(select(ProviderHook).where(ProviderHook.token_hash == digest))
    if row is None or row.provider != provider:
        raise ProviderHookNotFound()
    return row
