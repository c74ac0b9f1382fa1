"""Workspaces and API keys.

API keys are 256-bit random tokens (``nmb_`` + url-safe base64). Only the SHA-256 of the token and its
first characters (for people to recognise a key in a list) are stored; a plain hash is enough because
the token has full entropy, so there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.alerts import rules as alert_rules
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.db import utcnow
from nimbus_api.models import ApiKey, Message, Workspace
from nimbus_api.workspaces.errors import ApiKeyNotFound, WorkspaceExists, WorkspaceNotFound

TOKEN_PREFIX = "nmb_"
VISIBLE_PREFIX_LEN = 12
_TOUCH_EVERY = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_workspace(session: AsyncSession, vault: Vault, name: str) -> Workspace:
    if await session.scalar(select(Workspace.id).where(Workspace.name == name)) is not None:
        raise WorkspaceExists(f"workspace {name!r} exists")
    workspace = Workspace(name=name)
    session.add(workspace)
    await session.flush()
    await vault.create_data_key(session, workspace.id)
    alert_rules.seed_defaults(session, workspace.id)
    return workspace


async def get_workspace_by_name(session: AsyncSession, name: str) -> Workspace:
    workspace = await session.scalar(select(Workspace).where(Workspace.name == name))
    if workspace is None:
        raise WorkspaceNotFound(f"no workspace named {name!r}")
    return workspace


async def set_account_limit(session: AsyncSession, name: str, limit: int | None) -> Workspace:
    """The workspace's own limit on email accounts (None: the deployment's default again). Accounts it
    already holds beyond a lowered limit stay; only new ones are refused."""
    workspace = await get_workspace_by_name(session, name)
    workspace.max_email_accounts = limit
    await session.flush()
    return workspace


async def create_api_key(session: AsyncSession, workspace_id: uuid.UUID, name: str = "default") -> tuple[ApiKey, str]:
    """Create a key; the returned token is shown once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(workspace_id=workspace_id, name=name, prefix=token[:VISIBLE_PREFIX_LEN], token_hash=hash_token(token))
    session.add(key)
    await session.flush()
    return key, token


async def revoke_api_key(session: AsyncSession, ref: str) -> ApiKey:
    """Revoke by id or by visible prefix (exactly one live key must match)."""
    stmt = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    try:
        stmt = stmt.where(ApiKey.id == uuid.UUID(ref))
    except ValueError:
        stmt = stmt.where(ApiKey.prefix == ref)
    keys = list(await session.scalars(stmt))
    if len(keys) != 1:
        raise ApiKeyNotFound(f"no single live API key matches {ref!r}")
    keys[0].revoked_at = utcnow()
    await session.flush()
    return keys[0]


async def authenticate(session: AsyncSession, token: str) -> ApiKey | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    key = await session.scalar(
        select(ApiKey).where(ApiKey.token_hash == hash_token(token), ApiKey.revoked_at.is_(None))
    )
    if key is None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return key


async def list_workspaces(session: AsyncSession) -> list[Workspace]:
    return list(await session.scalars(select(Workspace).order_by(Workspace.created_at)))


async def ensure_default_workspace(session: AsyncSession, vault: Vault) -> str | None:
    """On a first start with no workspace: create ``default`` and return its first API key (else None)."""
    if await session.scalar(select(Workspace.id).limit(1)) is not None:
        return None
    workspace = await create_workspace(session, vault, "default")
    _, token = await create_api_key(session, workspace.id, "default")
    return token


async def sent_since(session: AsyncSession, workspace_id: uuid.UUID, since: datetime) -> int:
    """Messages of the workspace sent at or after ``since`` (what the monthly quota counts)."""
    count = await session.scalar(
        select(func.count()).where(
            Message.workspace_id == workspace_id, Message.state == "sent", Message.sent_at >= since
        )
    )
    return count or 0
