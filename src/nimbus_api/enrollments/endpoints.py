from __future__ import annotations

import html
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Response
from fastapi.responses import HTMLResponse

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.api.idempotency import IdempotencyDep
from nimbus_api.campaigns import service as campaigns
from nimbus_api.enrollments import service
from nimbus_api.enrollments.errors import UnsubscribeTokenNotFound
from nimbus_api.enrollments.schemas import EnrollmentPage, EnrollmentRead, EnrollmentStatus, EnrollReport, EnrollRequest
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses

router = APIRouter(
    prefix="/v1/campaigns/{campaign_id}/enrollments", tags=["enrollments"], responses=problem_responses(401)
)
_NOT_FOUND = {404: ["campaign.not_found"]}


@router.post(
    "",
    name="enrollments_create",
    summary="Enroll contacts into a campaign",
    response_model=EnrollReport,
    responses=problem_responses(
        404,
        409,
        422,
        codes={
            **_NOT_FOUND,
            409: ["campaign.completed"],
            422: ["validation_error", "idempotency_key.mismatch", "idempotency_key.invalid"],
        },
    ),
)
async def enrollments_create(
    campaign_id: uuid.UUID, payload: EnrollRequest, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    """Up to 10,000 contact ids. New enrollments start at step 1, due now; the report lists ids that are
    no contact of this workspace (`not_found`) and suppressed contacts (`suppressed`, not enrolled), and
    counts contacts enrolled before (`already_enrolled`, skipped)."""

    async def operation() -> EnrollReport:
        campaign = await campaigns.get(session, auth.workspace_id, campaign_id, for_share=True)
        return await service.enroll(session, auth.workspace_id, campaign, payload.contact_ids)

    response: Response = await idem.run(200, operation)
    return response


@router.get(
    "",
    name="enrollments_list",
    summary="List a campaign's enrollments",
    responses=problem_responses(404, 422, codes=_NOT_FOUND),
)
async def enrollments_list(
    campaign_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    status: EnrollmentStatus | None = None,
) -> EnrollmentPage:
    campaign = await campaigns.get(session, auth.workspace_id, campaign_id)
    data, next_cursor = await service.list_page(session, campaign, status=status, cursor=cursor, limit=limit)
    return EnrollmentPage(data=data, next_cursor=next_cursor)


@router.delete(
    "/{enrollment_id}",
    name="enrollments_stop",
    summary="Stop an enrollment",
    responses=problem_responses(404, 422, codes={404: ["campaign.not_found", "enrollment.not_found"]}),
)
async def enrollments_stop(
    campaign_id: uuid.UUID, enrollment_id: uuid.UUID, auth: AuthContext, session: Session
) -> EnrollmentRead:
    """Nothing more is sent to the contact in this campaign (status `stopped`). The enrollment is kept,
    so enrolling the contact again is `already_enrolled`; stopping twice changes nothing."""
    campaign = await campaigns.get(session, auth.workspace_id, campaign_id)
    return await service.stop(session, campaign, enrollment_id)


# --- the public unsubscribe link -----------------------------------------------------------------------

unsubscribe_router = APIRouter(prefix="/u", tags=["unsubscribe"])
# Tokens are url-safe base64 (``new_unsubscribe_token``); anything else cannot name an enrollment.
Token = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
_UNSUBSCRIBE_404 = problem_responses(404, 422, codes={404: ["unsubscribe.not_found"]})
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), headers=_PAGE_HEADERS)


@unsubscribe_router.get(
    "/{token}",
    name="unsubscribe_page",
    summary="Unsubscribe page (no authentication)",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **_UNSUBSCRIBE_404},
)
async def unsubscribe_page(token: Token, session: Session) -> HTMLResponse:
    """The link of the `List-Unsubscribe` header, opened by a person: a page with one button that POSTs
    the one-click form back. Opening it (or a link scanner fetching it) unsubscribes nothing."""
    if not await service.token_known(session, token):
        raise UnsubscribeTokenNotFound()
    form = (
        '<p>Stop receiving these emails?</p><form method="post" action="">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", form)


@unsubscribe_router.post(
    "/{token}",
    name="unsubscribe_one_click",
    summary="One-click unsubscribe, RFC 8058 (no authentication)",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}},
        **problem_responses(404, 422, codes={404: ["unsubscribe.not_found"]}),
    },
)
async def unsubscribe_one_click(
    token: Token,
    session: Session,
    list_unsubscribe: Annotated[
        Literal["One-Click"],
        Form(alias="List-Unsubscribe", description="`One-Click`, as RFC 8058 mail clients send it; may be left out."),
    ] = "One-Click",
) -> HTMLResponse:
    """What a mail client's unsubscribe button POSTs (`List-Unsubscribe=One-Click`, form-encoded): the
    address goes on the workspace's suppression list (`unsubscribed`) and all the contact's active
    enrollments in the workspace stop. Repeating it changes nothing and answers 200 again."""
    await service.unsubscribe(session, token)
    return _page("Unsubscribed", "<p>You will not receive these emails any more.</p>")
