"""`GET /v1/email-accounts/{id}/monitoring`."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.kit.problems import problem_responses
from nimbus_api.monitoring import service
from nimbus_api.monitoring.schemas import Monitoring

router = APIRouter(prefix="/v1/email-accounts", tags=["email-accounts"], responses=problem_responses(401))


@router.get(
    "/{account_id}/monitoring",
    name="email_accounts_monitoring",
    summary="An inbox's health, sending, sync, DNS and blocklist figures, each with its window",
    responses=problem_responses(404, 422, codes={404: ["email_account.not_found"]}),
)
async def email_accounts_monitoring(account_id: uuid.UUID, auth: AuthContext, session: Session) -> Monitoring:
    """Sends and SMTP connections over the last 24 hours and 7 days (rolling, ending now); bounce and
    complaint rates over the last 7 UTC days; sync lag as of now; DNS per record from the latest check
    (its time and source given); active alerts on the inbox or its domain."""
    return await service.monitoring(session, auth.workspace_id, account_id)
