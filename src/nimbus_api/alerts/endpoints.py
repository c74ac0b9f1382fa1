"""`/v1/alert-rules` (a workspace's rules, starting with the defaults) and `/v1/alerts` (what they raised)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from nimbus_api.alerts import history, rules
from nimbus_api.alerts.schemas import AlertPage, AlertRuleCreate, AlertRulePage, AlertRuleRead, AlertRuleUpdate
from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses

rules_router = APIRouter(prefix="/v1/alert-rules", tags=["alerts"], responses=problem_responses(401))
alerts_router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=problem_responses(401))

NOT_FOUND = "alert_rule.not_found"
INVALID = ["validation_error", "alert_rule.invalid_threshold"]
SCOPE_NOT_FOUND = "email_account.not_found"  # the rule's `account_id` names no inbox of the workspace


@rules_router.post(
    "",
    name="alert_rules_create",
    summary="Add an alert rule",
    status_code=201,
    responses=problem_responses(404, 422, codes={404: [SCOPE_NOT_FOUND], 422: INVALID}),
)
async def alert_rules_create(payload: AlertRuleCreate, auth: AuthContext, session: Session) -> AlertRuleRead:
    """The threshold is checked against the kind (README, "Alerts and monitoring"); the rule takes part in
    the next evaluation (every minute)."""
    rule = await rules.create(session, auth.workspace_id, payload)
    return (await rules.reads(session, [rule]))[0]


@rules_router.get("", name="alert_rules_list", summary="List alert rules", responses=problem_responses(422))
async def alert_rules_list(
    auth: AuthContext, session: Session, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> AlertRulePage:
    """Newest first; a new workspace has the default rules, one per kind."""
    rows, next_cursor = await rules.list_page(session, auth.workspace_id, cursor=cursor, limit=limit)
    return AlertRulePage(data=await rules.reads(session, rows), next_cursor=next_cursor)


@rules_router.get(
    "/{rule_id}",
    name="alert_rules_get",
    summary="Get an alert rule",
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND]}),
)
async def alert_rules_get(rule_id: uuid.UUID, auth: AuthContext, session: Session) -> AlertRuleRead:
    return (await rules.reads(session, [await rules.get(session, auth.workspace_id, rule_id)]))[0]


@rules_router.patch(
    "/{rule_id}",
    name="alert_rules_update",
    summary="Change an alert rule",
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND, SCOPE_NOT_FOUND], 422: INVALID}),
)
async def alert_rules_update(
    rule_id: uuid.UUID, payload: AlertRuleUpdate, auth: AuthContext, session: Session
) -> AlertRuleRead:
    """Only the fields given change. Disabling resolves the rule's active alerts now (`alert.resolved`,
    reason `rule_disabled`); a new threshold or scope applies from the next evaluation."""
    rule = await rules.update(session, auth.workspace_id, rule_id, payload)
    return (await rules.reads(session, [rule]))[0]


@rules_router.delete(
    "/{rule_id}",
    name="alert_rules_delete",
    summary="Delete an alert rule",
    status_code=204,
    responses=problem_responses(404, 422, codes={404: [NOT_FOUND]}),
)
async def alert_rules_delete(rule_id: uuid.UUID, auth: AuthContext, session: Session) -> Response:
    """Its active alerts are resolved (`alert.resolved`, reason `rule_deleted`); its past alerts stay
    listed with `rule_id` null."""
    await rules.remove(session, auth.workspace_id, rule_id)
    return Response(status_code=204)


@alerts_router.get("", name="alerts_list", summary="List alerts, active and past", responses=problem_responses(422))
async def alerts_list(
    auth: AuthContext,
    session: Session,
    active: Annotated[bool | None, Query(description="true: active now; false: resolved; left out: both.")] = None,
    subject_id: Annotated[uuid.UUID | None, Query(description="Only this inbox's or domain's alerts.")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> AlertPage:
    """Newest first (by when each alert started)."""
    rows, next_cursor = await history.list_page(
        session, auth.workspace_id, active=active, subject_id=subject_id, cursor=cursor, limit=limit
    )
    return AlertPage(data=history.reads(rows), next_cursor=next_cursor)
