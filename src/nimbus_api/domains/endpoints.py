from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.domains import service
from nimbus_api.domains.schemas import DomainPage, DomainRead
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses
from nimbus_api.kit.schemas import ANY_LINE_PATTERN

router = APIRouter(prefix="/v1/domains", tags=["domains"], responses=problem_responses(401))


@router.get("", name="domains_list", summary="List sending domains", responses=problem_responses(422))
async def domains_list(
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    name: Annotated[str | None, Query(max_length=253, pattern=ANY_LINE_PATTERN)] = None,
) -> DomainPage:
    items, next_cursor = await service.list_page(session, auth.workspace_id, name=name, cursor=cursor, limit=limit)
    return DomainPage(data=items, next_cursor=next_cursor)


@router.get(
    "/{domain_id}",
    name="domains_get",
    summary="Get a sending domain",
    responses=problem_responses(404, 422, codes={404: ["domain.not_found"]}),
)
async def domains_get(domain_id: uuid.UUID, auth: AuthContext, session: Session) -> DomainRead:
    return await service.get(session, auth.workspace_id, domain_id)
