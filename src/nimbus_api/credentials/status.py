"""What ``nimbus keys status`` shows: the configured master keys, and each workspace's data key (id,
version, age, when the schedule rotates it, the master key that wraps it) and any rotation left
half-way. Ids and dates only: nothing here touches key material."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.credentials.schedule import rotation_due_at
from nimbus_api.models import Credential, DataKey, Workspace


@dataclass(frozen=True)
class DataKeyStatus:
    workspace: str
    workspace_id: uuid.UUID
    data_key_id: uuid.UUID | None
    version: int | None
    """1 for the workspace's first data key, 2 after one rotation..."""
    created_at: datetime | None
    master_key_id: str | None
    retiring_keys: int
    """Keys of an unfinished rotation (the next scheduled run, or ``nimbus keys rotate``, finishes it)."""
    secrets_on_retiring: int

    def age_days(self, now: datetime) -> int | None:
        return (now - self.created_at).days if self.created_at is not None else None

    def due_at(self, max_age_days: int) -> datetime | None:
        return rotation_due_at(self.created_at, max_age_days) if self.created_at is not None else None


async def data_key_status(session: AsyncSession) -> list[DataKeyStatus]:
    numbered = select(
        DataKey.id,
        DataKey.workspace_id,
        DataKey.state,
        DataKey.created_at,
        DataKey.master_key_id,
        func.row_number()
        .over(partition_by=DataKey.workspace_id, order_by=(DataKey.created_at, DataKey.id))
        .label("version"),
    ).subquery()
    rows = await session.execute(
        select(
            Workspace.id,
            Workspace.name,
            numbered.c.id,
            numbered.c.version,
            numbered.c.created_at,
            numbered.c.master_key_id,
        )
        .outerjoin(numbered, and_(numbered.c.workspace_id == Workspace.id, numbered.c.state == "active"))
        .order_by(Workspace.name)
    )
    retiring_rows = await session.execute(
        select(DataKey.workspace_id, func.count()).where(DataKey.state == "retiring").group_by(DataKey.workspace_id)
    )
    retiring: dict[uuid.UUID, int] = dict(retiring_rows.all())
    pending_rows = await session.execute(
        select(Credential.workspace_id, func.count())
        .join(DataKey, DataKey.id == Credential.data_key_id)
        .where(DataKey.state == "retiring")
        .group_by(Credential.workspace_id)
    )
    pending: dict[uuid.UUID, int] = dict(pending_rows.all())
    return [
        DataKeyStatus(
            workspace=name,
            workspace_id=workspace_id,
            data_key_id=key_id,
            version=version,
            created_at=created_at,
            master_key_id=master_key_id,
            retiring_keys=retiring.get(workspace_id, 0),
            secrets_on_retiring=pending.get(workspace_id, 0),
        )
        for workspace_id, name, key_id, version, created_at, master_key_id in rows
    ]


def _rotation(status: DataKeyStatus, max_age_days: int, now: datetime) -> str:
    if status.retiring_keys:
        return f"in progress: {status.secrets_on_retiring} secret(s) still on a retiring key (the next run finishes it)"
    due = status.due_at(max_age_days)
    if due is None:
        return "not scheduled" if status.created_at is not None else "-"
    if due <= now:
        return "due now (the next hourly run)"
    return f"due {due:%Y-%m-%d} (in {(due - now).days} days)"


def render_status(
    statuses: Sequence[DataKeyStatus], master_key_ids: Sequence[str], *, max_age_days: int, now: datetime
) -> list[str]:
    """The lines ``nimbus keys status`` prints: master keys (the first is primary), the schedule, then a
    table with a row per workspace. A data key wrapped by a master key not configured is flagged."""
    lines = [
        "master keys (NIMBUS_MASTER_KEYS): "
        + ", ".join(f"{key} (primary)" if index == 0 else key for index, key in enumerate(master_key_ids)),
        f"scheduled rotation: the worker rotates a data key older than {max_age_days} days (hourly)"
        if max_age_days
        else "scheduled rotation: off (NIMBUS_DATA_KEY_MAX_AGE_DAYS=0)",
        "",
    ]
    rows = [("WORKSPACE", "DATA KEY", "VERSION", "AGE", "MASTER KEY", "ROTATION")]
    for status in statuses:
        master = status.master_key_id or "-"
        if status.master_key_id and status.master_key_id not in master_key_ids:
            master += " (not configured!)"
        age = status.age_days(now)
        rows.append(
            (
                status.workspace,
                str(status.data_key_id or "(none)"),
                f"v{status.version}" if status.version else "-",
                f"{age} days" if age is not None else "-",
                master,
                _rotation(status, max_age_days, now),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
    ]
    return lines
