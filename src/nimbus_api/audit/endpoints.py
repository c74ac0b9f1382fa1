from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.api.query import IsoDateTime
from nimbus_api.audit import service
from nimbus_api.audit.schemas import AuditPage, DecryptPurpose
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses

router = APIRouter(prefix="/v1/audit-log", tags=["audit"], responses=problem_responses(401))


@router.get("", name="audit_log_list", summary="List credential decrypts", responses=problem_responses(422))
async def audit_log_list(
    auth: AuthContext,
    session: Session,
    account_id: uuid.UUID | None = None,
    purpose: DecryptPurpose | None = None,
    since: Annotated[IsoDateTime | None, Query(description="Inclusive lower bound (ISO 8601).")] = None,
    until: Annotated[IsoDateTime | None, Query(description="Exclusive upper bound (ISO 8601).")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> AuditPage:
    """Every decrypt of a mailbox secret in this workspace, newest first."""
    filters = service.AuditFilters(account_id=account_id, purpose=purpose, since=since, until=until)
    items, next_cursor = await service.list_page(session, auth.workspace_id, filters, cursor, limit)
    return AuditPage(data=items, next_cursor=next_cursor)
