"""``/v1/email-accounts/{id}/warmup``: the inbox's warmup, stage and pause explained, and the switches."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.errors import AccountNotFound
from nimbus_api.api.deps import AuthContext, Session, SettingsDep
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.problems import problem_responses
from nimbus_api.models import EmailAccount
from nimbus_api.stages import service
from nimbus_api.stages.schemas import WarmupStatus, WarmupUpdate
from nimbus_api.stages.status import warmup_status

router = APIRouter(prefix="/v1/email-accounts", tags=["email-accounts"], responses=problem_responses(401))

_NOT_FOUND = problem_responses(404, 422, codes={404: ["email_account.not_found"], 422: ["validation_error"]})


async def _account(session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID) -> EmailAccount:
    account = await session.scalar(
        select(EmailAccount).where(EmailAccount.id == account_id, EmailAccount.workspace_id == workspace_id)
    )
    if account is None:
        raise AccountNotFound()
    return account


@router.get(
    "/{account_id}/warmup",
    name="email_accounts_get_warmup",
    summary="An email account's warmup: stage, pause and why, next stage, cooldown, daily limit",
    responses=_NOT_FOUND,
)
async def email_accounts_get_warmup(
    account_id: uuid.UUID, auth: AuthContext, session: Session, settings: SettingsDep
) -> WarmupStatus:
    """`paused` is true while `bounce_rate_7d` or `complaint_rate_7d` is over its threshold; `reasons`
    names each rate with its value and threshold. A paused inbox sends no warmup mail and does not
    graduate (its stage is 0 until the rate is back under the threshold). `next_stage.missing` lists what
    the next stage still needs."""
    account = await _account(session, auth.workspace_id, account_id)
    return warmup_status(account, settings, utcnow())


@router.patch(
    "/{account_id}/warmup",
    name="email_accounts_update_warmup",
    summary="Opt in or out of warmup; pin or release the stage",
    responses=_NOT_FOUND,
)
async def email_accounts_update_warmup(
    account_id: uuid.UUID, payload: WarmupUpdate, auth: AuthContext, session: Session, settings: SettingsDep
) -> WarmupStatus:
    """`enabled` switches the warmup exchange. `stage_override`: a number pins the stage (recorded as a
    `stage_changed` event when it changes it); null releases it and the stage is computed again at once
    (a `stage_override_cleared` event, then `stage_changed` by `platform` if it moves)."""
    account = await _account(session, auth.workspace_id, account_id)
    fields = payload.model_fields_set
    if "enabled" in fields and payload.enabled is not None:
        account.warmup_enabled = payload.enabled
    if "stage_override" in fields:
        if payload.stage_override is None:
            await service.clear_override(session, account, actor=auth.actor.value, settings=settings)
        else:
            service.set_override(session, account, payload.stage_override, actor=auth.actor.value)
    await session.flush()
    return warmup_status(account, settings, utcnow())
