"""What ``nimbus keys status`` shows: each workspace's data key (id, version, age, when the schedule
rotates it, the master key that wraps it) and any rotation left half-way. Ids and dates only: nothing
here touches key material."""

from __future__ import annotations

import uuid
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
