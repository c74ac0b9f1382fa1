from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from nimbus_api.api.deps import AuthContext, Session, VaultDep, app_state
from nimbus_api.domains import rechecks, service
from nimbus_api.domains.schemas import DomainHealthRead, DomainPage
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
async def domains_get(domain_id: uuid.UUID, auth: AuthContext, session: Session) -> DomainHealthRead:
    """The domain with its health: each check's latest result (MX, SPF, DKIM, DMARC, alignment, blocklists)."""
    return await service.get_health(session, auth.workspace_id, domain_id)


@router.post(
    "/{domain_id}/check",
    name="domains_check",
    summary="Re-check a sending domain now",
    responses=problem_responses(404, 422, 429, codes={404: ["domain.not_found"], 429: ["domain.check_rate_limited"]}),
)
async def domains_check(
    domain_id: uuid.UUID, auth: AuthContext, session: Session, vault: VaultDep, request: Request
) -> DomainHealthRead:
    """DNS, DMARC alignment and blocklists, now; pauses or resumes every inbox of the domain on the result.

    Rate-limited per domain and per workspace (`NIMBUS_DOMAIN_CHECK_LIMIT*`): the public blocklists
    refuse resolvers that ask too often. The newest signed message of an inbox's Sent folder, when
    there is one, replaces the message alignment is judged on."""
    state = app_state(request)
    await service.get(session, auth.workspace_id, domain_id)  # 404 before spending the rate limit
    await rechecks.ensure_allowed(state.redis, state.settings, auth.workspace_id, domain_id)
    checker = rechecks.checker_for(state.settings, state.verifier.net)
    return await rechecks.check_domain(session, checker, auth.workspace_id, domain_id, vault=vault)
