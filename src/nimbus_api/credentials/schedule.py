"""Scheduled data-key rotation: every workspace's data key is replaced when it is older than
``NIMBUS_DATA_KEY_MAX_AGE_DAYS`` (run hourly by the worker, ``credentials.tasks.rotate_data_keys``).

One run:

1. lists the workspaces that are due: their active data key is older than the maximum age, or they have
   a ``retiring`` key (a rotation that was interrupted: finishing it is resuming it, whatever the age),
   oldest key first;
2. rotates them one at a time with ``credentials.rotation.rotate_data_key`` (the same state machine as
   ``nimbus keys rotate --data-key``: new key, secrets re-encrypted in batches, old key erased), each
   under the workspace's rotation lock, a PostgreSQL advisory lock held on a connection of its own for
   the whole rotation (``kit.locks.session_lock``), which ``nimbus keys rotate`` takes too;
3. after taking a lock, checks again that the workspace is still due: a run that started at the same
   time as another (two workers), or a little after it, finds the rotation done and skips it, so two
   runs rotate once. A workspace whose lock is held elsewhere is skipped; its holder rotates it.

A crash anywhere leaves every secret decryptable (a secret row names the key that opens it, and a
retiring key opens until no row names it) and the workspace due, so the next run finishes it; the lock
dies with the crashed connection. A workspace that fails (a data key no configured master key opens)
is logged and the run goes on with the next. The log has a line per workspace rotated, with counts;
never key material.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.credentials import rotation
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import KeyringError
from nimbus_api.kit.locks import session_lock
from nimbus_api.models import DataKey, Workspace

log = structlog.get_logger(__name__)

LOCK_NAMESPACE = "data_keys.rotate"
"""The advisory-lock namespace of a workspace's data-key rotation (scheduled or ``nimbus keys rotate``)."""


def rotation_due_at(created_at: datetime, max_age_days: int) -> datetime | None:
    """When a data key created at ``created_at`` becomes due (None: scheduled rotation is off)."""
    return created_at + timedelta(days=max_age_days) if max_age_days > 0 else None


def _due(cutoff: datetime) -> ColumnElement[bool]:
    return or_(and_(DataKey.state == "active", DataKey.created_at < cutoff), DataKey.state == "retiring")


async def due_workspaces(session: AsyncSession, cutoff: datetime) -> list[uuid.UUID]:
    """Workspaces with an active key created before ``cutoff`` or a retiring key, oldest key first."""
    rows = await session.execute(
        select(DataKey.workspace_id)
        .where(_due(cutoff))
        .group_by(DataKey.workspace_id)
        .order_by(func.min(DataKey.created_at), DataKey.workspace_id)
    )
    return list(rows.scalars())


async def _still_due(session: AsyncSession, workspace_id: uuid.UUID, cutoff: datetime) -> tuple[str, DataKey | None]:
    """(workspace name, the key to be replaced) when the workspace is still due; its active key may be
    None when only a retiring key is left to finish."""
    name = await session.scalar(select(Workspace.name).where(Workspace.id == workspace_id))
    keys = list(await session.scalars(select(DataKey).where(DataKey.workspace_id == workspace_id, _due(cutoff))))
    if name is None or not keys:
        return name or "", None
    return name, min(keys, key=lambda k: k.created_at)


@dataclass
class ScheduledRun:
    rotated: list[rotation.RotationResult] = field(default_factory=list)
    skipped_busy: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)


async def rotate_due_data_keys(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    *,
    max_age_days: int,
    now: datetime,
    batch_size: int = 200,
) -> ScheduledRun:
    """One scheduled run (see the module docstring). ``max_age_days`` 0: scheduled rotation is off."""
    run = ScheduledRun()
    if max_age_days <= 0:
        return run
    cutoff = now - timedelta(days=max_age_days)
    async with sessionmaker() as session:
        candidates = await due_workspaces(session, cutoff)
    for workspace_id in candidates:
        async with session_lock(engine, LOCK_NAMESPACE, workspace_id) as got:
            if not got:
                run.skipped_busy.append(workspace_id)
                log.info("data_key_rotation_busy", workspace_id=str(workspace_id))
                continue
            async with sessionmaker() as session:
                name, replaced = await _still_due(session, workspace_id, cutoff)
            if replaced is None:
                continue  # rotated by another run meanwhile, or the workspace is gone
            try:
                result = await rotation.rotate_data_key(sessionmaker, vault, workspace_id, batch_size=batch_size)
            except KeyringError as exc:  # its message names no key material
                run.failed.append(workspace_id)
                log.error("data_key_rotation_failed", workspace=name, workspace_id=str(workspace_id), error=str(exc))
                continue
            except Exception as exc:
                run.failed.append(workspace_id)
                log.error(
                    "data_key_rotation_failed",
                    workspace=name,
                    workspace_id=str(workspace_id),
                    error_type=type(exc).__name__,
                )
                continue
        run.rotated.append(result)
        log.info(
            "data_key_rotated",
            workspace=name,
            workspace_id=str(workspace_id),
            data_key_id=str(result.data_key_id),
            replaced_key_id=str(replaced.id),
            replaced_key_age_days=(now - replaced.created_at).days,
            reencrypted=result.reencrypted,
            retired=result.retired,
            resumed=result.resumed,
        )
    return run
