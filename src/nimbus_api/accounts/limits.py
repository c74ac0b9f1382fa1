"""How many email accounts a workspace may hold, and the check a create makes.

The limit is the workspace's own (``workspaces.max_email_accounts``, set by ``nimbus workspace
set-limit``) or else the deployment's ``NIMBUS_MAX_ACCOUNTS_PER_WORKSPACE``. A create checks it twice:

1. before the live verification, without a lock, so a workspace at its limit costs no network work;
2. after it, just before the insert, under a transaction-level advisory lock of the workspace: two
   concurrent creates at the limit both pass the first check, but the second waits at the lock until
   the first commits and then counts the first's account. The lock is held only from the count to the
   commit of the request, and only creates of the same workspace wait on it (no row of ``workspaces``
   is locked, so nothing else that touches the workspace waits).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.errors import EmailAccountLimitReached
from nimbus_api.kit.locks import xact_lock
from nimbus_api.models import EmailAccount, Workspace

LOCK_NAMESPACE = "email_accounts.create"


@dataclass(frozen=True)
class AccountLimit:
    limit: int
    own: bool  # the workspace's own limit (else the deployment's default)

    def describe(self) -> str:
        return (
            f"{self.limit}, this workspace's own limit set by the operator"
            if self.own
            else f"{self.limit}, the deployment's default (NIMBUS_MAX_ACCOUNTS_PER_WORKSPACE)"
        )


async def account_limit(session: AsyncSession, workspace_id: uuid.UUID, default: int) -> AccountLimit:
    own = await session.scalar(select(Workspace.max_email_accounts).where(Workspace.id == workspace_id))
    return AccountLimit(limit=own, own=True) if own is not None else AccountLimit(limit=default, own=False)


async def account_count(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(EmailAccount).where(EmailAccount.workspace_id == workspace_id)
    )
    return count or 0


async def ensure_room(session: AsyncSession, workspace_id: uuid.UUID, default: int, *, lock: bool) -> None:
    """Raise ``EmailAccountLimitReached`` (409) when the workspace cannot take one more account. With
    ``lock``, counted under the workspace's create lock, held until the transaction ends."""
    if lock:
        await xact_lock(session, LOCK_NAMESPACE, workspace_id)
    limit = await account_limit(session, workspace_id, default)
    count = await account_count(session, workspace_id)
    if count >= limit.limit:
        raise EmailAccountLimitReached(
            f"this workspace holds {count} email account(s) and may hold {limit.describe()}: delete one, "
            "or ask the operator to raise the limit"
        )
