from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from nimbus_api.accounts.schemas import CampaignType
from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.api.idempotency import IdempotencyDep
from nimbus_api.campaigns import pool, service
from nimbus_api.campaigns.schemas import (
    CampaignCreate,
    CampaignPage,
    CampaignRead,
    CampaignStats,
    CampaignStatus,
    CampaignUpdate,
    PoolAccountRead,
    PoolAttach,
    PoolPage,
)
from nimbus_api.campaigns.stats import campaign_stats
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=problem_responses(401))

_IDEMPOTENCY_CODES = ["idempotency_key.mismatch", "idempotency_key.invalid"]
_NOT_FOUND = {404: ["campaign.not_found"]}
_GET = problem_responses(404, 422, codes=_NOT_FOUND)


@router.post(
    "",
    name="campaigns_create",
    summary="Create a campaign (status `draft`)",
    status_code=201,
    response_model=CampaignRead,
    responses=problem_responses(422, codes={422: ["validation_error", *_IDEMPOTENCY_CODES]}),
)
async def campaigns_create(
    payload: CampaignCreate, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    """Every step's templates are compiled and rendered against a sample contact first: a syntax error, an
    unknown variable or a subject with a line break is a 422 naming `steps.N.subject|text|html`."""

    async def operation() -> CampaignRead:
        campaign = await service.create(session, auth.workspace_id, payload)
        return (await service.to_read(session, [campaign]))[0]

    response: Response = await idem.run(201, operation)
    return response


@router.get("", name="campaigns_list", summary="List campaigns", responses=problem_responses(422))
async def campaigns_list(
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    status: CampaignStatus | None = None,
    type: CampaignType | None = None,
) -> CampaignPage:
    filters = service.CampaignFilters(status=status, type=type)
    campaigns, next_cursor = await service.list_page(session, auth.workspace_id, filters, cursor, limit)
    return CampaignPage(data=await service.to_read(session, campaigns), next_cursor=next_cursor)


@router.get("/{campaign_id}", name="campaigns_get", summary="Get a campaign", responses=_GET)
async def campaigns_get(campaign_id: uuid.UUID, auth: AuthContext, session: Session) -> CampaignRead:
    campaign = await service.get(session, auth.workspace_id, campaign_id)
    return (await service.to_read(session, [campaign]))[0]


@router.patch("/{campaign_id}", name="campaigns_update", summary="Update a campaign", responses=_GET)
async def campaigns_update(
    campaign_id: uuid.UUID, payload: CampaignUpdate, auth: AuthContext, session: Session
) -> CampaignRead:
    """Only the fields given change; `steps` and `schedule` are replaced as a whole. `status` changes
    with `start` and `pause`."""
    campaign = await service.update(session, auth.workspace_id, campaign_id, payload)
    return (await service.to_read(session, [campaign]))[0]


@router.delete(
    "/{campaign_id}",
    name="campaigns_delete",
    summary="Delete a campaign with its steps, enrollments and messages",
    status_code=204,
    responses=_GET,
)
async def campaigns_delete(campaign_id: uuid.UUID, auth: AuthContext, session: Session) -> Response:
    await service.delete_campaign(session, auth.workspace_id, campaign_id)
    return Response(status_code=204)


@router.post(
    "/{campaign_id}/start",
    name="campaigns_start",
    summary="Start (or resume) a campaign",
    response_model=CampaignRead,
    responses=problem_responses(
        404,
        409,
        422,
        codes={
            **_NOT_FOUND,
            409: ["campaign.no_steps", "campaign.no_inboxes", "campaign.completed"],
            422: ["validation_error", *_IDEMPOTENCY_CODES],
        },
    ),
)
async def campaigns_start(
    campaign_id: uuid.UUID, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    """A draft or paused campaign becomes `active`: it needs at least one step and one inbox in its pool.
    Starting an active campaign changes nothing; a completed one cannot start again."""

    async def operation() -> CampaignRead:
        campaign = await service.start(session, auth.workspace_id, campaign_id)
        return (await service.to_read(session, [campaign]))[0]

    response: Response = await idem.run(200, operation)
    return response


@router.post(
    "/{campaign_id}/pause",
    name="campaigns_pause",
    summary="Pause an active campaign",
    response_model=CampaignRead,
    responses=problem_responses(
        404,
        409,
        422,
        codes={**_NOT_FOUND, 409: ["campaign.not_active"], 422: ["validation_error", *_IDEMPOTENCY_CODES]},
    ),
)
async def campaigns_pause(
    campaign_id: uuid.UUID, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    """Nothing more is queued until the campaign starts again; pausing a paused campaign changes nothing."""

    async def operation() -> CampaignRead:
        campaign = await service.pause(session, auth.workspace_id, campaign_id)
        return (await service.to_read(session, [campaign]))[0]

    response: Response = await idem.run(200, operation)
    return response


@router.get("/{campaign_id}/stats", name="campaigns_stats", summary="Campaign statistics", responses=_GET)
async def campaigns_stats(campaign_id: uuid.UUID, auth: AuthContext, session: Session) -> CampaignStats:
    """Messages by state and enrollments by status (zeros included), today's (UTC) sends and remaining
    budget of every pool inbox, and why inboxes may not send now."""
    campaign = await service.get(session, auth.workspace_id, campaign_id)
    return await campaign_stats(session, campaign, utcnow())


# --- the sending pool -------------------------------------------------------------------------------


@router.post(
    "/{campaign_id}/accounts",
    name="campaign_accounts_attach",
    summary="Add email accounts to the sending pool",
    response_model=PoolPage,
    responses=problem_responses(
        404,
        422,
        codes={
            404: ["campaign.not_found", "email_account.not_found"],
            422: ["validation_error", *_IDEMPOTENCY_CODES],
        },
    ),
)
async def campaign_accounts_attach(
    campaign_id: uuid.UUID, payload: PoolAttach, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    """Accounts already in the pool stay; an unknown account id (or one of another workspace) is a 404
    `email_account.not_found` and adds nothing. Answers the pool's first page."""

    async def operation() -> PoolPage:
        campaign = await service.get(session, auth.workspace_id, campaign_id)
        await pool.attach(session, auth.workspace_id, campaign, payload.account_ids)
        data, next_cursor = await pool.list_page(session, campaign, None, MAX_LIMIT, utcnow())
        return PoolPage(data=data, next_cursor=next_cursor)

    response: Response = await idem.run(200, operation)
    return response


@router.get(
    "/{campaign_id}/accounts",
    name="campaign_accounts_list",
    summary="List the sending pool, with each inbox's eligibility",
    responses=_GET,
)
async def campaign_accounts_list(
    campaign_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> PoolPage:
    campaign = await service.get(session, auth.workspace_id, campaign_id)
    data, next_cursor = await pool.list_page(session, campaign, cursor, limit, utcnow())
    return PoolPage(data=data, next_cursor=next_cursor)


@router.delete(
    "/{campaign_id}/accounts/{account_id}",
    name="campaign_accounts_detach",
    summary="Remove an email account from the sending pool",
    status_code=204,
    responses=problem_responses(404, 422, codes={404: ["campaign.not_found", "campaign_account.not_found"]}),
)
async def campaign_accounts_detach(
    campaign_id: uuid.UUID, account_id: uuid.UUID, auth: AuthContext, session: Session
) -> Response:
    """The inbox stops being picked for this campaign; messages already queued on it are not affected."""
    campaign = await service.get(session, auth.workspace_id, campaign_id)
    await pool.detach(session, campaign, account_id)
    return Response(status_code=204)


@router.post(
    "/{campaign_id}/accounts/{account_id}/reenable",
    name="campaign_accounts_reenable",
    summary="Put an inbox the bounce guard disabled back into the campaign's rotation",
    response_model=PoolAccountRead,
    responses=problem_responses(404, 422, codes={404: ["campaign.not_found", "campaign_account.not_found"]}),
)
async def campaign_accounts_reenable(
    campaign_id: uuid.UUID, account_id: uuid.UUID, auth: AuthContext, session: Session
) -> PoolAccountRead:
    """Clears `bounce_guard.disabled_at` and restarts the inbox's bounce count in this campaign (its rate
    is judged again after the minimum sample). An inbox that is not disabled is returned unchanged. A
    campaign the guard paused (`all_accounts_disabled`) stays paused until it is started again."""
    campaign = await service.get(session, auth.workspace_id, campaign_id)
    return await pool.reenable(session, campaign, account_id, utcnow())
