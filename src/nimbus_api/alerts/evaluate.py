"""Evaluating the alert rules: one statement per kind, over one workspace or all of them.

Each statement (``_STATEMENT``) computes the kind's condition set, ``(rule, subject, value)`` for every
enabled rule of the kind and every subject of its scope for which the condition holds (``_CONDITIONS``),
and moves the alert states to match, in one snapshot:

* ``locked``: the kind's active alerts, each locked (``FOR UPDATE SKIP LOCKED``: one another evaluator
  holds is its to move, so evaluators never wait on each other's updates and never deadlock), with
  whether its pair is still in the condition set;
* ``resolved``: those no longer in it (the condition ended, the subject or the rule's scope is gone, the
  rule was disabled or deleted meanwhile) become inactive;
* ``kept``: the others get their latest value;
* ``triggered``: pairs in the set with no active alert get one. The insert goes through the partial
  unique index ``uq_alert_states_active`` (``ON CONFLICT ... DO NOTHING``), in (rule, subject) order:
  of two evaluators inserting the same pair, the second waits for the first to commit and then inserts
  nothing, so each alert triggers once.

The statement returns the transitions it made, and their events are emitted in the caller's transaction
(``alert.triggered`` / ``alert.resolved``): a transition and its event commit together, or neither.

Callers: the worker's cron (``tasks.evaluate_alerts``, every workspace), and code that has just changed
a watched column (the health recompute, a domain check, the sync), for its workspace, in its own
transaction (``evaluate(session, workspace_id=..., kinds=[...])``) or by enqueueing
``evaluate_alerts`` with the workspace id after its commit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.alerts.kinds import KINDS, AlertKind, describe
from nimbus_api.events.catalogue import AlertResolvedData, AlertTriggeredData, EventData
from nimbus_api.kit.db import utcnow

# A UUIDv7 made in SQL (PostgreSQL 15 has no uuidv7()): the 48-bit millisecond clock over a random v4,
# its version nibble turned from 4 into 7 (bits 52 and 53), so alert ids sort by creation like every id.
_UUID7 = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), "
    "52, 1), 53, 1), 'hex')::uuid"
)
_RULES = """r.kind = :kind AND r.enabled
        AND (CAST(:workspace_id AS uuid) IS NULL OR r.workspace_id = CAST(:workspace_id AS uuid))"""
_ACCOUNTS = f"""
    FROM alert_rules r
    JOIN email_accounts a ON a.workspace_id = r.workspace_id AND (r.account_id IS NULL OR a.id = r.account_id)
    WHERE {_RULES}"""
_DOMAINS = f"""
    FROM alert_rules r
    LEFT JOIN email_accounts scope ON scope.id = r.account_id
    JOIN domains d ON d.workspace_id = r.workspace_id AND (r.account_id IS NULL OR d.id = scope.domain_id)
    WHERE {_RULES}"""
_SYNCED_ACCOUNTS = f"""
    FROM alert_rules r
    JOIN email_accounts a ON a.workspace_id = r.workspace_id AND (r.account_id IS NULL OR a.id = r.account_id)
    JOIN mailbox_syncs s ON s.account_id = a.id
    WHERE {_RULES}"""
_ACCOUNT_COLUMNS = (
    "r.id AS rule_id, r.workspace_id, r.severity, r.threshold, a.id AS subject_id, a.email AS subject_name"
)
_DOMAIN_COLUMNS = "r.id AS rule_id, r.workspace_id, r.severity, r.threshold, d.id AS subject_id, d.name AS subject_name"

_CONDITIONS: dict[str, str] = {
    "score_below": f"SELECT {_ACCOUNT_COLUMNS}, a.overall_score AS value {_ACCOUNTS} AND a.overall_score < r.threshold",
    "bounce_rate_above": f"SELECT {_ACCOUNT_COLUMNS}, a.bounce_rate_7d AS value {_ACCOUNTS}"
    " AND a.bounce_rate_7d > r.threshold",
    "complaint_rate_above": f"SELECT {_ACCOUNT_COLUMNS}, a.complaint_rate_7d AS value {_ACCOUNTS}"
    " AND a.complaint_rate_7d > r.threshold",
    "sync_lag_above": f"""
    SELECT * FROM (
        SELECT {_ACCOUNT_COLUMNS},
               extract(epoch FROM CAST(:now AS timestamptz) - coalesce(s.last_success_at, s.created_at))::float8
                   AS value,
               s.status = 'failing' AND s.failure_notified_at IS NOT NULL AS reported_failing
        {_SYNCED_ACCOUNTS}
    ) lag
    WHERE lag.value > lag.threshold OR lag.reported_failing""",  # noqa: S608  (constants only, as above)
    "listed": f"SELECT {_DOMAIN_COLUMNS}, CAST(NULL AS float8) AS value {_DOMAINS} AND d.blocklist_status = 'listed'",
    "domain_unhealthy": f"SELECT {_DOMAIN_COLUMNS}, CAST(NULL AS float8) AS value {_DOMAINS}"
    " AND (d.dns_status = 'fail' OR d.is_paused)",
}

_STATEMENT = """
WITH cond AS ({condition}),
locked AS (
    SELECT s.id, c.value AS current, c.rule_id IS NULL AS ended
    FROM alert_states s
    LEFT JOIN cond c ON c.rule_id = s.rule_id AND c.subject_id = s.subject_id
    WHERE s.active AND s.kind = :kind
      AND (CAST(:workspace_id AS uuid) IS NULL OR s.workspace_id = CAST(:workspace_id AS uuid))
    FOR UPDATE OF s SKIP LOCKED
),
resolved AS (
    UPDATE alert_states s
    SET active = false, resolved_at = :now, resolved_reason = 'condition_ended', updated_at = :now
    FROM locked l
    WHERE s.id = l.id AND l.ended
    RETURNING s.*
),
kept AS (
    UPDATE alert_states s SET last_value = l.current, updated_at = :now
    FROM locked l
    WHERE s.id = l.id AND NOT l.ended AND s.last_value IS DISTINCT FROM l.current
),
triggered AS (
    INSERT INTO alert_states (id, workspace_id, rule_id, kind, severity, subject_type, subject_id, subject_name,
                              threshold, value, last_value, active, since, updated_at)
    SELECT {uuid7}, c.workspace_id, c.rule_id, :kind, c.severity, :subject_type, c.subject_id, c.subject_name,
           c.threshold, c.value, c.value, true, :now, :now
    FROM cond c
    WHERE NOT EXISTS (
        SELECT 1 FROM alert_states s WHERE s.active AND s.rule_id = c.rule_id AND s.subject_id = c.subject_id
    )
    ORDER BY c.rule_id, c.subject_id
    ON CONFLICT (rule_id, subject_id) WHERE active DO NOTHING
    RETURNING *
)
SELECT 'triggered' AS transition, t.id, t.workspace_id, t.rule_id, t.severity, t.subject_id, t.subject_name,
       t.threshold, t.value, t.since
FROM triggered t
UNION ALL
SELECT 'resolved', r.id, r.workspace_id, r.rule_id, r.severity, r.subject_id, r.subject_name,
       r.threshold, r.last_value, r.since
FROM resolved r
"""

STATEMENTS = {
    kind: text(_STATEMENT.format(condition=condition, uuid7=_UUID7)) for kind, condition in _CONDITIONS.items()
}
"""One statement per kind (the SQL is built from constants only: no input is ever formatted in)."""


@dataclass
class Outcome:
    """What one evaluation changed: the alerts it triggered and resolved (their ids), per kind."""

    triggered: dict[str, list[uuid.UUID]]
    resolved: dict[str, list[uuid.UUID]]

    @property
    def counts(self) -> tuple[int, int]:
        return sum(map(len, self.triggered.values())), sum(map(len, self.resolved.values()))


def triggered_data(kind: str, row: Any) -> AlertTriggeredData:
    spec = KINDS[kind]
    return AlertTriggeredData(
        alert=f"{spec.subject}.{kind}",
        severity=row.severity,
        message=describe(kind, row.subject_name, row.value, row.threshold),
        subject_id=row.subject_id,
        alert_id=row.id,
        rule_id=row.rule_id,
        kind=spec.name,
        subject_type=spec.subject,
        subject_name=row.subject_name,
        value=row.value,
        threshold=row.threshold,
    )


def resolved_data(kind: str, row: Any, reason: str, now: datetime) -> AlertResolvedData:
    """``row``: an alert_states row (or the statement's), with ``value`` the latest measured value."""
    spec = KINDS[kind]
    return AlertResolvedData(
        alert_id=row.id,
        alert=f"{spec.subject}.{kind}",
        severity=row.severity,
        message=f"resolved ({reason.replace('_', ' ')}): {describe(kind, row.subject_name, row.value, row.threshold)}",
        rule_id=row.rule_id,
        kind=spec.name,
        subject_type=spec.subject,
        subject_id=row.subject_id,
        subject_name=row.subject_name,
        value=row.value,
        threshold=row.threshold,
        reason=reason,
        duration_seconds=max(0, int((now - row.since).total_seconds())),
    )


def emit_grouped(session: AsyncSession, event_type: str, items: Iterable[tuple[uuid.UUID, EventData]]) -> None:
    """Events of one type, one insert per workspace."""
    by_workspace: dict[uuid.UUID, list[EventData]] = defaultdict(list)
    for workspace_id, data in items:
        by_workspace[workspace_id].append(data)
    for workspace_id, batch in by_workspace.items():
        events.emit_many(session, workspace_id, event_type, batch)


async def evaluate(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID | None = None,
    kinds: Iterable[AlertKind] | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Evaluate the rules of the given kinds (all by default) for one workspace (all by default), move
    the alert states and emit the events of every transition. Flushes, never commits."""
    now = now or utcnow()
    outcome = Outcome(triggered={}, resolved={})
    for kind in kinds or KINDS:
        spec = KINDS[kind]
        params = {"kind": kind, "subject_type": spec.subject, "workspace_id": workspace_id, "now": now}
        rows = (await session.execute(STATEMENTS[kind], params)).all()
        up = [r for r in rows if r.transition == "triggered"]
        down = [r for r in rows if r.transition == "resolved"]
        outcome.triggered[kind] = [r.id for r in up]
        outcome.resolved[kind] = [r.id for r in down]
        emit_grouped(session, "alert.triggered", ((r.workspace_id, triggered_data(kind, r)) for r in up))
        emit_grouped(
            session, "alert.resolved", ((r.workspace_id, resolved_data(kind, r, "condition_ended", now)) for r in down)
        )
    await session.flush()
    return outcome
