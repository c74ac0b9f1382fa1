from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.limits import account_count, account_limit
from nimbus_api.api.deps import AuthContext, Session, SettingsDep
from nimbus_api.config import Settings
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.problems import problem_responses
from nimbus_api.models import Workspace
from nimbus_api.workspaces import service
from nimbus_api.workspaces.schemas import WorkspaceRead, WorkspaceUpdate

router = APIRouter(prefix="/v1/workspace", tags=["workspace"], responses=problem_responses(401))


async def _read(session: AsyncSession, workspace: Workspace, settings: Settings) -> WorkspaceRead:
    now = utcnow()
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    return WorkspaceRead(
        id=workspace.id,
        name=workspace.name,
        monthly_send_quota=workspace.monthly_send_quota,
        sent_this_month=await service.sent_since(session, workspace.id, month_start),
        email_accounts=await account_count(session, workspace.id),
        max_email_accounts=(await account_limit(session, workspace.id, settings.max_accounts_per_workspace)).limit,
        created_at=workspace.created_at,
    )


@router.get("", name="workspace_get", summary="The workspace of the calling API key")
async def workspace_get(auth: AuthContext, session: Session, settings: SettingsDep) -> WorkspaceRead:
    return await _read(session, await session.get_one(Workspace, auth.workspace_id), settings)


@router.patch(
    "",
    name="workspace_update",
    summary="Update the workspace's settings",
    responses=problem_responses(422),
)
async def workspace_update(
    payload: WorkspaceUpdate, auth: AuthContext, session: Session, settings: SettingsDep
) -> WorkspaceRead:
    """`monthly_send_quota`: campaigns stop sending for the rest of the month once it is reached."""
    workspace = await session.get_one(Workspace, auth.workspace_id, with_for_update=True)
    if "monthly_send_quota" in payload.model_fields_set:
        workspace.monthly_send_quota = payload.monthly_send_quota
    await session.flush()
    return await _read(session, workspace, settings)
