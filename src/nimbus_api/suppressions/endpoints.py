from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.api.idempotency import IdempotencyDep
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses
from nimbus_api.kit.schemas import ANY_LINE_PATTERN
from nimbus_api.suppressions import service
from nimbus_api.suppressions.schemas import SuppressionCreate, SuppressionPage, SuppressionRead, SuppressionReason

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"], responses=problem_responses(401))


@router.get("", name="suppressions_list", summary="List suppressed addresses", responses=problem_responses(422))
async def suppressions_list(
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    reason: SuppressionReason | None = None,
    email: Annotated[
        str | None, Query(max_length=320, pattern=ANY_LINE_PATTERN, description="Exact address, any case.")
    ] = None,
) -> SuppressionPage:
    rows, next_cursor = await service.list_page(
        session, auth.workspace_id, reason=reason, email=email, cursor=cursor, limit=limit
    )
    return SuppressionPage(data=[service.to_read(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "",
    name="suppressions_create",
    summary="Suppress an address (reason `manual`)",
    status_code=201,
    response_model=SuppressionRead,
    responses=problem_responses(
        409,
        422,
        codes={
            409: ["suppression.exists"],
            422: ["validation_error", "idempotency_key.mismatch", "idempotency_key.invalid"],
        },
    ),
)
async def suppressions_create(
    payload: SuppressionCreate, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    """The address is never sent to again from this workspace; active enrollments of the contact with
    this address stop now."""

    async def operation() -> SuppressionRead:
        return service.to_read(await service.add_manual(session, auth.workspace_id, payload.email, payload.detail))

    response: Response = await idem.run(201, operation)
    return response


@router.delete(
    "/{suppression_id}",
    name="suppressions_delete",
    summary="Remove an address from the suppression list",
    status_code=204,
    responses=problem_responses(404, 422, codes={404: ["suppression.not_found"]}),
)
async def suppressions_delete(suppression_id: uuid.UUID, auth: AuthContext, session: Session) -> Response:
    """The address may be sent to again; enrollments the suppression stopped stay stopped."""
    await service.remove(session, auth.workspace_id, suppression_id)
    return Response(status_code=204)
