from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.kit.problems import problem_responses
from nimbus_api.models import Workspace

router = APIRouter(prefix="/v1/workspace", tags=["workspace"], responses=problem_responses(401))


class WorkspaceRead(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


@router.get("", name="workspace_get", summary="The workspace of the calling API key")
async def workspace_get(auth: AuthContext, session: Session) -> WorkspaceRead:
    workspace = await session.get_one(Workspace, auth.workspace_id)
    return WorkspaceRead(id=workspace.id, name=workspace.name, created_at=workspace.created_at)
