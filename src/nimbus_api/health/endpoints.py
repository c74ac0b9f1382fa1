"""``GET /v1/email-accounts/{id}/health`` and ``.../health/history``: workspace-scoped like every account route
(another workspace's inbox is 404 ``email_account.not_found``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from nimbus_api.accounts import service as accounts
from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.health import score, snapshots
from nimbus_api.health.schemas import HealthComponent, HealthDay, HealthHistory, HealthRead
from nimbus_api.kit.db import utc_day, utcnow
from nimbus_api.kit.problems import problem_responses
from nimbus_api.models import Domain, EmailAccount, MailboxSync

router = APIRouter(prefix="/v1/email-accounts", tags=["email-accounts"], responses=problem_responses(401))
_RESPONSES = problem_responses(404, 422, codes={404: ["email_account.not_found"], 422: ["validation_error"]})


def _component(key: str, stored: dict[str, Any]) -> HealthComponent:
    """A stored component (value, score, data) with what ``score``'s table says about it."""
    c = score.BY_KEY[key]
    return HealthComponent(
        key=c.key,
        label=c.label,
        value=stored.get("value"),
        score=stored["score"],
        weight=c.weight,
        reputation=c.reputation,
        data=(stored.get("data") or {}) | score.static_data(c),
    )


async def _first(session: Session, account: EmailAccount) -> list[HealthComponent]:
    """Before the first recompute: the components as it will find them with no activity yet."""
    domain = await session.get_one(Domain, account.domain_id)
    sync = await session.get(MailboxSync, account.id)
    health = score.compute(
        score.Inputs(
            sync_status=sync.status if sync else None,
            sync_failures=sync.consecutive_failures if sync else 0,
            dns_status=domain.dns_status,
            blocklist_status=domain.blocklist_status,
            warmup_progress=account.warmup_progress,
            warmup_sent_total=account.warmup_sent_total,
        )
    )
    return [_component(s.key, {"value": s.value, "score": s.score, "data": s.data}) for s in health.components]


@router.get(
    "/{account_id}/health",
    name="email_accounts_health",
    summary="An inbox's health score, band and components",
    responses=_RESPONSES,
)
async def email_accounts_health(account_id: uuid.UUID, auth: AuthContext, session: Session) -> HealthRead:
    """The scores of the last recompute (every few minutes, and right after a bounce, a complaint, a login
    failure or a listing), and each component with its value, weight and the data behind it. The formula,
    weights and band thresholds are in the README ("Health scores")."""
    account = await accounts.get(session, auth.workspace_id, account_id)
    stored = account.health_components
    if stored:
        components = [_component(c.key, stored[c.key]) for c in score.COMPONENTS if c.key in stored]
    else:
        components = await _first(session, account)
    return HealthRead(
        account_id=account.id,
        overall_score=account.overall_score,
        reputation_score=account.reputation_score,
        band=account.health_band,
        computed_at=account.health_computed_at,
        components=components,
    )


@router.get(
    "/{account_id}/health/history",
    name="email_accounts_health_history",
    summary="An inbox's daily health, for charts",
    responses=_RESPONSES,
)
async def email_accounts_health_history(
    account_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    days: Annotated[int, Query(ge=1, le=365, description="Today and the days before it: 1..365.")] = 30,
) -> HealthHistory:
    """One entry per UTC day with a recompute: the day's last scores and band, oldest first."""
    account = await accounts.get(session, auth.workspace_id, account_id)
    since = utc_day(utcnow()) - timedelta(days=days - 1)
    rows = await snapshots.history(session, account.id, since)
    return HealthHistory(
        account_id=account.id,
        days=days,
        data=[
            HealthDay(
                day=r.day,
                overall_score=r.overall_score,
                reputation_score=r.reputation_score,
                band=r.band,
            )
            for r in rows
        ],
    )
