"""The health recompute, in PostgreSQL: one statement for a whole batch of inboxes, no Python per row.

The statement (``RECOMPUTE_SQL``) aggregates each inbox's 7-day windows in CTEs (daily usage, sent
messages, failed attempts, pauses for a refused login, replies; the sync row and the domain's verdicts
joined), scores every component with the formula of ``health.score`` (its weights and thresholds are bind
parameters built from ``score.COMPONENTS`` by ``parameters``: one source of truth), and writes
``overall_score``, ``reputation_score``, ``health_band``, ``health_components`` and ``health_computed_at`` in one
``UPDATE ... FROM``. The same statement refreshes ``bounce_rate_7d`` and ``complaint_rate_7d`` from the same
daily rows (``inbox.rates`` refreshes them when a bounce or complaint arrives; without this they would keep
an old bounce after its day left the window, and the warmup pause and stage rule read them). It returns
only the inboxes whose band changed, with the band before and after, for
``account.health_changed``.

Exactly one event per change, even when two workers recompute the same inbox at once: the ``locked`` CTE
takes the rows ``FOR UPDATE`` in id order (so two batches never deadlock) and reads the band there. Under
READ COMMITTED a row lock that had to wait returns the row as the other transaction committed it, so the
second recompute sees the first one's band as the old band, finds no change, and emits nothing.

The value, score, total and band steps are ``MATERIALIZED``: inlined, PostgreSQL would substitute each
step's expressions into the next (a score repeats its value, a total repeats ten scores, a band repeats its
totals), and evaluate the whole tree again for every use: 8 ms per inbox instead of a few microseconds.

JIT compilation is off for the statement (``SET LOCAL``, this transaction only): the join of grouped CTEs is
estimated at millions of rows, which makes PostgreSQL spend seconds compiling a plan that runs in tens of
milliseconds.

The rows stay locked until the caller commits, and the rotation's pick (``FOR UPDATE SKIP LOCKED``) passes
over locked inboxes meanwhile: the runs (``health.tasks``) commit each batch right after its statement.

A recompute request (``health.requests``) is cleared only if it is still the one this statement's snapshot
saw: a request committed meanwhile (its bounce not counted here) stays for the next run.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api import events
from nimbus_api.events.catalogue import AccountHealthChangedData
from nimbus_api.health import score
from nimbus_api.health.score import COMPONENTS, NEUTRAL, WINDOW_DAYS, Component
from nimbus_api.kit.db import utc_day

F = "float8"


def _p(c: Component, attr: str) -> str:
    return f"CAST(:{c.key}__{attr} AS {F})"


def _ramp(c: Component, value: str) -> str:
    """``score.ramp`` in SQL, term for term (so the floating-point results are the same)."""
    floor, zero_at, full_at = _p(c, "floor"), _p(c, "zero_at"), _p(c, "full_at")
    return (
        f"({floor} + (CAST(100 AS {F}) - {floor}) * LEAST(CAST(1 AS {F}), GREATEST(CAST(0 AS {F}), "
        f"({value} - {zero_at}) / ({full_at} - {zero_at}))))"
    )


_RATES = {
    # key: (numerator, denominator), the columns of ``v`` (as ``score.score_component`` reads ``Inputs``)
    "bounce_rate": ("bounces", "sends"),
    "complaint_rate": ("complaints", "sends"),
    "reply_rate": ("replies", "accepted"),
    "send_success": ("accepted", "attempted"),
    "connection_success": ("attempted - connection_failures", "attempted"),
}
_LEVEL_COLUMNS = {"blocklist": "blocklist_status", "dns": "dns_status"}


def _num(expr: str) -> str:
    """A number as JSON text (``null`` when NULL); ``float8`` prints its shortest exact form."""
    return f"COALESCE(CAST({expr} AS text), 'null')"


def _str(expr: str) -> str:
    """A string as JSON text, escaped by ``to_json``."""
    return f"COALESCE(CAST(to_json(CAST({expr} AS text)) AS text), 'null')"


def _obj(pairs: Sequence[tuple[str, str]]) -> str:
    """A JSON object as text from (constant key, JSON text expression) pairs. Why text: one cast to jsonb
    per row is several times cheaper than a ``jsonb_build_object`` per component and per data object
    (about 1 s per 10,000 inboxes for the nested objects, measured). The stored components hold what
    depends on the inbox only (value, score, numerator and denominator): the weights, window and minimum
    samples are ``score``'s table, which the API adds back; so the JSON stays small enough to be stored
    uncompressed in the row."""
    parts = []
    for i, (key, value) in enumerate(pairs):
        parts += [("'{" if i == 0 else "',") + f'"{key}":' + "'", value]
    return f"concat({', '.join(parts)}, '}}')"


def _window_data(numerator: str, denominator: str) -> str:
    """What a rate or count was computed from (the window and sample are ``score.static_data``: not stored)."""
    return _obj([("numerator", _num(numerator)), ("denominator", _num(denominator))])


def _expressions(c: Component) -> tuple[str, str, str, bool]:
    """The component's value (a column of ``v``), its score (of ``s``, from the value), its data (JSON
    text) and whether the value is a string (a verdict)."""
    neutral = f"CAST({NEUTRAL} AS {F})"
    value = f"{c.key}__value"
    if c.key in _RATES:
        num, den = _RATES[c.key]
        value_sql = (
            f"CASE WHEN {den} > 0 THEN LEAST(CAST(100 AS {F}), CAST(100 AS {F}) * CAST({num} AS {F}) / {den}) END"
        )
        score_sql = (
            f"CASE WHEN {value} IS NOT NULL AND {den} >= :{c.key}__min_sample THEN {_ramp(c, value)} ELSE {neutral} END"
        )
        return value_sql, score_sql, _window_data(num, den), False
    if c.key == "auth_failures":
        ramped = _ramp(c, value)
        score_sql = f"CASE WHEN attempted >= :{c.key}__min_sample THEN {ramped} ELSE LEAST({neutral}, {ramped}) END"
        return f"CAST(auth_failures AS {F})", score_sql, _window_data("auth_failures", "attempted"), False
    levels = f"CAST(:{c.key}__levels AS jsonb)"
    if c.key in _LEVEL_COLUMNS:
        column = _LEVEL_COLUMNS[c.key]
        score_sql = f"COALESCE(CAST({levels} ->> {value} AS {F}), {neutral})"
        return column, score_sql, _obj([("verdict", _str(column))]), True
    if c.key == "imap_sync":
        score_sql = (
            f"CASE WHEN {value} = 'failing' THEN GREATEST(CAST(0 AS {F}), {neutral} - {_p(c, 'step')} * sync_failures)"
            f" ELSE COALESCE(CAST({levels} ->> {value} AS {F}), {neutral}) END"
        )
        data = _obj([("status", _str("sync_status")), ("consecutive_failures", _num("sync_failures"))])
        return "sync_status", score_sql, data, True
    assert c.key == "warmup"
    value_sql = f"LEAST(CAST(100 AS {F}), GREATEST(CAST(0 AS {F}), CAST(warmup_progress AS {F})))"
    return value_sql, _ramp(c, value), _obj([("warmup_sent_total", _num("warmup_sent_total"))]), False


def _band_rank(column: str) -> str:
    whens = " ".join(f"WHEN {column} >= CAST(:band_{i} AS {F}) THEN {i}" for i in range(len(score.BANDS)))
    return f"(CASE {whens} ELSE {len(score.BANDS)} END)"


def _build_sql() -> str:
    parts = [_expressions(c) for c in COMPONENTS]
    values = ",\n        ".join(f"{v} AS {c.key}__value" for c, (v, _, _, _) in zip(COMPONENTS, parts, strict=True))
    scores = ",\n        ".join(f"{s} AS {c.key}__score" for c, (_, s, _, _) in zip(COMPONENTS, parts, strict=True))
    overall = " + ".join(f"{_p(c, 'weight')} * {c.key}__score" for c in COMPONENTS)
    reputation = " + ".join(f"{_p(c, 'weight')} * {c.key}__score" for c in COMPONENTS if c.reputation)
    components = _obj(
        [
            (
                c.key,
                _obj(
                    [
                        ("value", (_str if is_text else _num)(f"{c.key}__value")),
                        ("score", _num(f"{c.key}__score")),
                        ("data", data),
                    ]
                ),
            )
            for c, (_, _, data, is_text) in zip(COMPONENTS, parts, strict=True)
        ]
    )
    bands = ", ".join(f"'{b}'" for b in score.BAND_ORDER)
    # Only names and expressions built above from constants are interpolated; every number is a bind parameter.
    return f"""
WITH acct AS (
    SELECT a.id, a.health_requested_at AS seen_request, a.warmup_progress, a.warmup_sent_total,
           d.dns_status, d.blocklist_status
    FROM email_accounts a JOIN domains d ON d.id = a.domain_id
    WHERE a.id = ANY(CAST(:ids AS uuid[]))
), usage AS (
    SELECT u.account_id, sum(u.sends) AS sends, sum(u.bounces) AS bounces, sum(u.complaints) AS complaints
    FROM account_daily_usage u
    WHERE u.account_id = ANY(CAST(:ids AS uuid[])) AND u.day > CAST(:today AS date) - CAST(:window AS integer)
    GROUP BY u.account_id
), sent AS (
    SELECT m.account_id, count(*) AS accepted
    FROM messages m
    WHERE m.account_id = ANY(CAST(:ids AS uuid[])) AND m.sent_at >= :since AND m.sent_at IS NOT NULL
    GROUP BY m.account_id
), tries AS (
    SELECT t.account_id, count(*) AS failed_attempts,
           count(*) FILTER (WHERE t.error_code = ANY(CAST(:connection_codes AS varchar[]))) AS connection_failures
    FROM send_attempts t
    WHERE t.account_id = ANY(CAST(:ids AS uuid[])) AND t.started_at >= :since
    GROUP BY t.account_id
), pauses AS (
    SELECT e.account_id, count(*) AS auth_failures
    FROM account_events e
    WHERE e.account_id = ANY(CAST(:ids AS uuid[])) AND e.kind = 'paused' AND e.created_at >= :since
      AND e.detail ->> 'reason' = ANY(CAST(:auth_codes AS varchar[]))
    GROUP BY e.account_id
), replies AS (
    SELECT i.account_id, count(*) AS replies
    FROM inbound_messages i
    WHERE i.account_id = ANY(CAST(:ids AS uuid[])) AND i.kind = 'reply' AND i.created_at >= :since
    GROUP BY i.account_id
), x AS (
    SELECT acct.id, acct.seen_request,
           COALESCE(usage.sends, 0) AS sends, COALESCE(usage.bounces, 0) AS bounces,
           COALESCE(usage.complaints, 0) AS complaints, COALESCE(sent.accepted, 0) AS accepted,
           COALESCE(tries.failed_attempts, 0) AS failed_attempts,
           COALESCE(tries.connection_failures, 0) AS connection_failures,
           COALESCE(pauses.auth_failures, 0) AS auth_failures, COALESCE(replies.replies, 0) AS replies,
           COALESCE(ms.status, 'none') AS sync_status, COALESCE(ms.consecutive_failures, 0) AS sync_failures,
           acct.dns_status, acct.blocklist_status, acct.warmup_progress, acct.warmup_sent_total
    FROM acct
    LEFT JOIN usage ON usage.account_id = acct.id
    LEFT JOIN sent ON sent.account_id = acct.id
    LEFT JOIN tries ON tries.account_id = acct.id
    LEFT JOIN pauses ON pauses.account_id = acct.id
    LEFT JOIN replies ON replies.account_id = acct.id
    LEFT JOIN mailbox_syncs ms ON ms.account_id = acct.id
), v AS MATERIALIZED (
    SELECT y.*,
        {values}
    FROM (SELECT x.*, x.accepted + x.failed_attempts AS attempted FROM x) y
), s AS MATERIALIZED (
    SELECT v.*,
        {scores}
    FROM v
), t AS MATERIALIZED (
    SELECT s.id, s.seen_request, s.blocklist_status, s.sends, s.bounces, s.complaints,
           ({overall}) / CAST(:total_weight AS {F}) AS overall,
           ({reputation}) / CAST(:reputation_weight AS {F}) AS reputation,
           CAST({components} AS jsonb) AS components
    FROM s
), banded AS MATERIALIZED (
    SELECT t.*,
           CASE WHEN t.blocklist_status = 'listed' THEN 'blocked'
                ELSE (ARRAY[{bands}])[GREATEST({_band_rank("t.overall")}, {_band_rank("t.reputation")}) + 1]
           END AS band
    FROM t
), locked AS (
    SELECT a.id, a.health_band AS old_band, a.overall_score AS old_overall, a.reputation_score AS old_reputation
    FROM email_accounts a
    WHERE a.id IN (SELECT id FROM acct)
    ORDER BY a.id
    FOR UPDATE OF a
), changed AS (
    UPDATE email_accounts a
    SET overall_score = b.overall, reputation_score = b.reputation, health_band = b.band,
        health_components = b.components, health_computed_at = :now,
        bounce_rate_7d = CASE WHEN b.sends > 0 THEN LEAST(100.0, 100.0 * b.bounces / b.sends) ELSE 0 END,
        complaint_rate_7d = CASE WHEN b.sends > 0 THEN LEAST(100.0, 100.0 * b.complaints / b.sends) ELSE 0 END,
        health_requested_at = CASE WHEN a.health_requested_at IS NOT DISTINCT FROM b.seen_request THEN NULL
                                   ELSE a.health_requested_at END
    FROM banded b JOIN locked l ON l.id = b.id
    WHERE a.id = b.id
    RETURNING a.id, a.workspace_id, a.email, l.old_band, l.old_overall, l.old_reputation,
              b.band, b.overall, b.reputation
)
SELECT * FROM changed WHERE old_band IS DISTINCT FROM band
"""  # noqa: S608


RECOMPUTE_SQL = text(_build_sql())
_NO_JIT = text("SET LOCAL jit = off")


def parameters(now: datetime) -> dict[str, Any]:
    """The statement's bind parameters: the window ending at ``now`` and every number of ``score``."""
    params: dict[str, Any] = {
        "now": now,
        "today": utc_day(now),
        "since": now - timedelta(days=WINDOW_DAYS),
        "window": WINDOW_DAYS,
        "connection_codes": list(score.CONNECTION_FAILURE_CODES),
        "auth_codes": list(score.AUTH_FAILURE_CODES),
        "total_weight": float(score.TOTAL_WEIGHT),
        "reputation_weight": float(score.REPUTATION_WEIGHT),
    }
    for i, (_, threshold) in enumerate(score.BANDS):
        params[f"band_{i}"] = threshold
    for c in COMPONENTS:
        params |= {
            f"{c.key}__weight": float(c.weight),
            f"{c.key}__min_sample": c.min_sample,
            f"{c.key}__zero_at": c.zero_at,
            f"{c.key}__full_at": c.full_at,
            f"{c.key}__floor": c.floor,
            f"{c.key}__step": c.step,
            f"{c.key}__levels": json.dumps(c.levels),
        }
    return params


def bind(now: datetime, account_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    """The statement's parameters for these inboxes, only those it names (asyncpg refuses extra ones)."""
    params = parameters(now) | {"ids": list(account_ids)}
    return {k: v for k, v in params.items() if f":{k}" in RECOMPUTE_SQL.text}


@dataclass(frozen=True)
class Change:
    account_id: uuid.UUID
    workspace_id: uuid.UUID
    previous_band: str
    band: str
    previous_score: float
    score: float


async def recompute(session: AsyncSession, account_ids: Sequence[uuid.UUID], now: datetime) -> list[Change]:
    """Recompute these inboxes (one statement) and add ``account.health_changed`` for each band change to
    the session. Flushes, never commits: the caller's transaction writes the scores and the events together."""
    if not account_ids:
        return []
    await session.execute(_NO_JIT)
    rows = (await session.execute(RECOMPUTE_SQL, bind(now, account_ids))).all()
    by_workspace: dict[uuid.UUID, list[AccountHealthChangedData]] = defaultdict(list)
    changes = []
    for r in rows:
        changes.append(Change(r.id, r.workspace_id, r.old_band, r.band, r.old_overall, r.overall))
        by_workspace[r.workspace_id].append(
            AccountHealthChangedData(
                account_id=r.id,
                email=r.email,
                previous_score=_bounded(r.old_overall),
                score=_bounded(r.overall),
                previous_band=r.old_band,
                band=r.band,
                previous_reputation_score=_bounded(r.old_reputation),
                reputation_score=_bounded(r.reputation),
            )
        )
    for workspace_id, items in by_workspace.items():
        events.emit_many(session, workspace_id, "account.health_changed", items)
    return changes


def _bounded(value: float) -> float:
    return min(100.0, max(0.0, float(value)))
