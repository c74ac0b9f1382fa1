"""Alert rule rules: the defaults at workspace creation, create, list, read, change, delete.

A threshold is checked against its kind (``kinds.Kind.check``) before anything is written, so a refused
request changes nothing. Disabling or deleting a rule resolves its active alerts at once, one
``alert.resolved`` each (``rule_disabled`` / ``rule_deleted``), under the rule's row lock; the rows are
locked one by one as an evaluator would lock them, so an evaluator resolving the same alert at the same
moment and this change emit one event between them. Changing a threshold or the scope moves nothing by
itself: the next evaluation resolves what no longer holds and triggers what now does.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.accounts.errors import AccountNotFound
from nimbus_api.alerts.errors import AlertRuleNotFound, InvalidThreshold
from nimbus_api.alerts.evaluate import emit_grouped, resolved_data
from nimbus_api.alerts.kinds import DEFAULTS, KINDS
from nimbus_api.alerts.schemas import AlertRuleCreate, AlertRuleRead, AlertRuleUpdate
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.pagination import page_of, paginate
from nimbus_api.models import AlertRule, AlertState, EmailAccount

_RESOLVE_RULE = text(
    """
    UPDATE alert_states
    SET active = false, resolved_at = :now, resolved_reason = :reason, updated_at = :now
    WHERE rule_id = :rule_id AND active
    RETURNING id, workspace_id, rule_id, severity, subject_id, subject_name, threshold, last_value AS value, since
    """
)


def seed_defaults(session: AsyncSession, workspace_id: uuid.UUID) -> list[AlertRule]:
    """The rules a new workspace starts with (``kinds.DEFAULTS``); added to the caller's unit of work."""
    rules = [
        AlertRule(workspace_id=workspace_id, kind=kind, threshold=threshold, severity=severity, enabled=True)
        for kind, threshold, severity in DEFAULTS
    ]
    session.add_all(rules)
    return rules


def _check_threshold(kind: str, threshold: float | None) -> None:
    problem = KINDS[kind].check(threshold)
    if problem is not None:
        raise InvalidThreshold(problem, extra={"field": "threshold", "kind": kind})


async def _check_account(session: AsyncSession, workspace_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
    if account_id is None:
        return
    found = await session.scalar(
        select(EmailAccount.id).where(EmailAccount.id == account_id, EmailAccount.workspace_id == workspace_id)
    )
    if found is None:
        # as a campaign's pool does: an id that names no inbox of the workspace is a 404 of that inbox
        raise AccountNotFound(f"no email account {account_id} in this workspace")


async def reads(session: AsyncSession, rules: Sequence[AlertRule]) -> list[AlertRuleRead]:
    ids = [r.id for r in rules]
    counts: Counter[uuid.UUID] = Counter()
    if ids:
        rows = await session.execute(
            select(AlertState.rule_id, func.count())
            .where(AlertState.rule_id.in_(ids), AlertState.active)
            .group_by(AlertState.rule_id)
        )
        counts.update({rule_id: n for rule_id, n in rows.all() if rule_id is not None})
    return [
        AlertRuleRead(
            id=r.id,
            kind=KINDS[r.kind].name,
            subject_type=KINDS[r.kind].subject,
            threshold=r.threshold,
            unit=KINDS[r.kind].unit,
            severity=r.severity,
            enabled=r.enabled,
            account_id=r.account_id,
            active_alerts=counts[r.id],
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rules
    ]


async def create(session: AsyncSession, workspace_id: uuid.UUID, body: AlertRuleCreate) -> AlertRule:
    spec = KINDS[body.kind]
    threshold = body.threshold if body.threshold is not None else spec.default_threshold
    _check_threshold(body.kind, threshold)
    await _check_account(session, workspace_id, body.account_id)
    rule = AlertRule(
        workspace_id=workspace_id,
        kind=body.kind,
        threshold=threshold,
        severity=body.severity or spec.default_severity,
        enabled=body.enabled,
        account_id=body.account_id,
    )
    session.add(rule)
    await session.flush()
    return rule


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, rule_id: uuid.UUID, *, for_update: bool = False
) -> AlertRule:
    stmt = select(AlertRule).where(AlertRule.id == rule_id, AlertRule.workspace_id == workspace_id)
    rule = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if rule is None:
        raise AlertRuleNotFound()
    return rule


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[AlertRule], str | None]:
    stmt = select(AlertRule).where(AlertRule.workspace_id == workspace_id)
    return page_of(list(await session.scalars(paginate(stmt, AlertRule.id, cursor, limit))), limit)


async def _resolve_all(session: AsyncSession, rule: AlertRule, reason: str) -> int:
    now = utcnow()
    rows = (await session.execute(_RESOLVE_RULE, {"rule_id": rule.id, "now": now, "reason": reason})).all()
    emit_grouped(session, "alert.resolved", ((r.workspace_id, resolved_data(rule.kind, r, reason, now)) for r in rows))
    return len(rows)


async def update(
    session: AsyncSession, workspace_id: uuid.UUID, rule_id: uuid.UUID, body: AlertRuleUpdate
) -> AlertRule:
    rule = await get(session, workspace_id, rule_id, for_update=True)
    given = body.model_fields_set
    if "threshold" in given:
        _check_threshold(rule.kind, body.threshold)
    if "account_id" in given:
        await _check_account(session, workspace_id, body.account_id)
    if "threshold" in given:
        rule.threshold = body.threshold
    if "account_id" in given:
        rule.account_id = body.account_id
    if "severity" in given and body.severity is not None:
        rule.severity = body.severity
    if "enabled" in given and body.enabled is not None:
        if rule.enabled and not body.enabled:
            await _resolve_all(session, rule, "rule_disabled")
        rule.enabled = body.enabled
    rule.updated_at = utcnow()
    await session.flush()
    return rule


async def remove(session: AsyncSession, workspace_id: uuid.UUID, rule_id: uuid.UUID) -> None:
    """Its active alerts are resolved first; its past alerts stay in the history (``rule_id`` null)."""
    rule = await get(session, workspace_id, rule_id, for_update=True)
    await _resolve_all(session, rule, "rule_deleted")
    await session.execute(delete(AlertRule).where(AlertRule.id == rule.id))
