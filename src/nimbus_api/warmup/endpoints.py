from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from nimbus_api.accounts import service as accounts
from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.problems import problem_responses
from nimbus_api.warmup.activity import activity
from nimbus_api.warmup.schemas import WarmupActivity

router = APIRouter(prefix="/v1/email-accounts", tags=["warmup"], responses=problem_responses(401))


@router.get(
    "/{account_id}/warmup/activity",
    name="email_accounts_warmup_activity",
    summary="An inbox's warmup exchange per day",
    responses=problem_responses(404, 422, codes={404: ["email_account.not_found"], 422: ["validation_error"]}),
)
async def email_accounts_warmup_activity(
    account_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    days: Annotated[int, Query(ge=1, le=90, description="How many UTC days, today included.")] = 7,
) -> WarmupActivity:
    """Per UTC day: the warmup messages this inbox sent and where they landed at the receiving inboxes
    (INBOX or Junk, rescued from Junk, replied to), and the warmup messages it received (and found in its
    Junk). Counts only: nothing about the other inboxes of the exchange is shown."""
    account = await accounts.get(session, auth.workspace_id, account_id)
    return await activity(session, account.id, days, utcnow())
