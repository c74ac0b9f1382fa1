"""The dispatcher's SQL: fan events out into deliveries, claim due deliveries, record attempts.

Every function runs in the caller's transaction and is set-based (one statement for a whole batch),
so a round of the dispatcher costs a handful of statements whatever the number of deliveries in it.

**Concurrency cap across workers.** A claim first locks the endpoints it will take work from
(``FOR NO KEY UPDATE SKIP LOCKED``: another worker claiming for the same endpoint skips it, and
``FOR KEY SHARE`` taken by new deliveries' foreign keys is not blocked), then counts the endpoint's
leased deliveries: what is leased is what is in flight somewhere. It claims at most
``max_in_flight - leased``, and within the endpoint's rate limit (a one-second window kept on the
endpoint row). So N workers never hold more than ``max_in_flight`` requests to one endpoint, and a
stalled endpoint holds only its own slots: every other endpoint's deliveries are claimed as usual.

**Fairness.** Endpoints are taken in order of when they were last claimed, so a workspace with a
deep backlog does not starve one with a single event.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.kit.ids import new_ids
from nimbus_api.webhooks.schedule import MAX_ATTEMPTS, next_delay, parse_retry_after
from nimbus_api.webhooks.transport import Outcome


@dataclass(frozen=True)
class Claim:
    """One delivery this process holds the lease of, with what the attempt needs."""

    delivery_id: uuid.UUID
    lease_id: uuid.UUID
    workspace_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    url: str
    attempts: int
    single_attempt: bool

    @property
    def webhook_id(self) -> str:
        return str(self.event_id)


@dataclass(frozen=True)
class Result:
    claim: Claim
    outcome: Outcome
    attempted_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class Policy:
    """The delivery rules the settings choose."""

    max_in_flight: int
    lease: timedelta
    retry_after_cap: timedelta
    disable_after: timedelta


_FAN_OUT = text(
    """
    WITH batch AS (
        SELECT id, workspace_id, type FROM events
        WHERE dispatched_at IS NULL
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), marked AS (
        UPDATE events e SET dispatched_at = :now FROM batch b WHERE e.id = b.id RETURNING e.id
    ), made AS (
        INSERT INTO webhook_deliveries (
            id, workspace_id, event_id, endpoint_id, event_type, status, attempts, next_attempt_at,
            single_attempt, replay, created_at
        )
        SELECT nimbus_uuid7(), b.workspace_id, b.id, ep.id, b.type, 'pending', 0, :now, false, false, :now
        FROM batch b
        JOIN webhook_endpoints ep ON ep.workspace_id = b.workspace_id AND ep.enabled
            AND ep.event_types && ARRAY['*', b.type, split_part(b.type, '.', 1) || '.*']::varchar[]
        ORDER BY b.id, ep.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM marked) AS events, (SELECT count(*) FROM made) AS deliveries
    """
)


async def fan_out(session: AsyncSession, now: datetime, limit: int = 1000) -> tuple[int, int]:
    """Turn undispatched events into one pending delivery per matching enabled endpoint.

    Returns (events dispatched, deliveries made). Workers fan out disjoint batches (``SKIP LOCKED``)."""
    row = (await session.execute(_FAN_OUT, {"now": now, "limit": limit})).one()
    return int(row.events), int(row.deliveries)


_LOCK_ENDPOINTS = text(
    """
    SELECT ep.id, ep.workspace_id, ep.url, ep.rate_limit_per_second, ep.rate_window_start, ep.rate_window_count
    FROM webhook_endpoints ep
    WHERE ep.enabled AND EXISTS (
        SELECT 1 FROM webhook_deliveries d
        WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= :now
    )
    ORDER BY ep.last_claimed_at NULLS FIRST, ep.id
    LIMIT :limit
    FOR NO KEY UPDATE OF ep SKIP LOCKED
    """
)
_IN_FLIGHT = text(
    """
    SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
    WHERE endpoint_id = ANY(:ids) AND lease_id IS NOT NULL AND status = 'pending' AND leased_until > :now
    GROUP BY endpoint_id
    """
)
_TAKE = text(
    """
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:counts AS int[])) AS w(endpoint_id, n)
    ), picked AS (
        SELECT x.id FROM wanted w CROSS JOIN LATERAL (
            SELECT d.id FROM webhook_deliveries d
            WHERE d.endpoint_id = w.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= :now
            ORDER BY d.next_attempt_at, d.id
            LIMIT w.n
        ) x
    )
    UPDATE webhook_deliveries d
    SET lease_id = :lease_id, leased_until = :until, next_attempt_at = :until
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.workspace_id, d.endpoint_id, d.event_id, d.event_type, d.attempts, d.single_attempt
    """
)
_MARK_CLAIMED = text(
    """
    UPDATE webhook_endpoints ep
    SET last_claimed_at = :now, rate_window_start = v.window_start, rate_window_count = v.window_count
    FROM unnest(CAST(:ids AS uuid[]), CAST(:starts AS timestamptz[]), CAST(:counts AS int[]))
        AS v(id, window_start, window_count)
    WHERE ep.id = v.id
    """
)


async def claim(
    session: AsyncSession,
    *,
    now: datetime,
    slots: int,
    policy: Policy,
    lease_id: uuid.UUID,
    endpoint_limit: int = 200,
) -> list[Claim]:
    """Lease up to ``slots`` due deliveries, within every endpoint's concurrency cap and rate limit."""
    if slots <= 0:
        return []
    endpoints = (await session.execute(_LOCK_ENDPOINTS, {"now": now, "limit": endpoint_limit})).all()
    if not endpoints:
        return []
    ids = [row.id for row in endpoints]
    leased = {row.endpoint_id: int(row.n) for row in await session.execute(_IN_FLIGHT, {"ids": ids, "now": now})}
    second = now.replace(microsecond=0)
    wanted: list[tuple[uuid.UUID, int]] = []
    windows: list[tuple[uuid.UUID, datetime, int]] = []
    urls: dict[uuid.UUID, str] = {}
    left = slots
    for row in endpoints:
        urls[row.id] = row.url
        room = policy.max_in_flight - leased.get(row.id, 0)
        used = row.rate_window_count if row.rate_window_start == second else 0
        if row.rate_limit_per_second is not None:
            room = min(room, row.rate_limit_per_second - used)
        take = max(0, min(room, left))
        if take:
            wanted.append((row.id, take))
            left -= take
        windows.append((row.id, second, used))
        if left == 0:
            break
    if not wanted:
        return []
    rows = (
        await session.execute(
            _TAKE,
            {
                "ids": [w[0] for w in wanted],
                "counts": [w[1] for w in wanted],
                "now": now,
                "until": now + policy.lease,
                "lease_id": lease_id,
            },
        )
    ).all()
    taken: dict[uuid.UUID, int] = {}
    for row in rows:
        taken[row.endpoint_id] = taken.get(row.endpoint_id, 0) + 1
    await session.execute(
        _MARK_CLAIMED,
        {
            "now": now,
            "ids": [w[0] for w in windows],
            "starts": [w[1] for w in windows],
            "counts": [used + taken.get(endpoint_id, 0) for endpoint_id, _, used in windows],
        },
    )
    return [
        Claim(
            delivery_id=row.id,
            lease_id=lease_id,
            workspace_id=row.workspace_id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.event_type,
            url=urls[row.endpoint_id],
            attempts=row.attempts,
            single_attempt=row.single_attempt,
        )
        for row in rows
    ]


async def bodies(session: AsyncSession, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    """The exact bytes each event is delivered as (the stored JSON document's text, the same every try)."""
    if not event_ids:
        return {}
    rows = await session.execute(
        text("SELECT id, payload::text AS body FROM events WHERE id = ANY(:ids)"), {"ids": list(set(event_ids))}
    )
    return {row.id: row.body.encode("utf-8") for row in rows}


@dataclass(frozen=True)
class Verdict:
    """What one attempt means for its delivery."""

    status: str
    will_retry: bool
    next_attempt_at: datetime | None
    final_reason: str | None


def judge(result: Result, policy: Policy, rng: random.Random | None = None) -> Verdict:
    outcome, claim_ = result.outcome, result.claim
    number = claim_.attempts + 1
    if outcome.ok:
        return Verdict("succeeded", False, None, None)
    if outcome.error_class == "gone":
        return Verdict("failed", False, None, "the endpoint answered 410 Gone: it is disabled")
    if outcome.abort:
        return Verdict("failed", False, None, "the receiver answered webhook-delivery: abort-message")
    if claim_.single_attempt:
        return Verdict("failed", False, None, "a test delivery is tried once")
    delay = next_delay(
        number,
        status_code=outcome.status_code,
        retry_after=parse_retry_after(outcome.retry_after, result.finished_at),
        cap=policy.retry_after_cap,
        rng=rng,
    )
    if delay is None:
        return Verdict("failed", False, None, f"all {MAX_ATTEMPTS} attempts failed")
    return Verdict("pending", True, result.finished_at + delay, None)


_RECORD = text(
    """
    UPDATE webhook_deliveries d
    SET status = v.status, attempts = d.attempts + 1, next_attempt_at = v.next_attempt_at,
        lease_id = NULL, leased_until = NULL, last_attempt_at = v.attempted_at,
        last_status_code = v.status_code, last_error_class = v.error_class, final_reason = v.final_reason,
        finished_at = CASE WHEN v.status = 'pending' THEN NULL ELSE v.finished_at END
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:leases AS uuid[]), CAST(:statuses AS varchar[]),
        CAST(:nexts AS timestamptz[]), CAST(:attempted AS timestamptz[]), CAST(:codes AS int[]),
        CAST(:classes AS varchar[]), CAST(:reasons AS varchar[]), CAST(:finished AS timestamptz[])
    ) AS v(id, lease_id, status, next_attempt_at, attempted_at, status_code, error_class, final_reason, finished_at)
    WHERE d.id = v.id AND d.lease_id = v.lease_id
    """
)
# Joined to the deliveries so that an attempt whose delivery went meanwhile (its endpoint deleted, its
# event purged) is dropped rather than failing the round on a foreign key.
_ATTEMPTS = text(
    """
    INSERT INTO webhook_attempts (
        id, workspace_id, delivery_id, endpoint_id, attempted_at, number, status_code, latency_ms,
        response_body, error_class, error, will_retry, next_attempt_at
    )
    SELECT v.id, d.workspace_id, d.id, d.endpoint_id, v.attempted_at, v.number, v.status_code, v.latency_ms,
           v.body, v.error_class, v.error, v.will_retry, v.next_attempt_at
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:deliveries AS uuid[]), CAST(:attempted AS timestamptz[]),
        CAST(:numbers AS int[]), CAST(:codes AS int[]), CAST(:latencies AS int[]), CAST(:bodies AS text[]),
        CAST(:classes AS varchar[]), CAST(:errors AS varchar[]), CAST(:retries AS boolean[]),
        CAST(:nexts AS timestamptz[])
    ) AS v(id, delivery_id, attempted_at, number, status_code, latency_ms, body, error_class, error,
           will_retry, next_attempt_at)
    JOIN webhook_deliveries d ON d.id = v.delivery_id
    """
)
_ENDPOINT_SUCCEEDED = text(
    "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = :id AND failing_since IS NOT NULL"
)
_ENDPOINT_FAILED = text(
    """
    UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, :first)
    WHERE id = :id RETURNING failing_since, enabled
    """
)
_DISABLE = text(
    """
    UPDATE webhook_endpoints
    SET enabled = false, disabled_reason = :reason, disabled_at = :now, updated_at = :now
    WHERE id = :id AND enabled
    """
)


async def record(
    session: AsyncSession, results: Sequence[Result], policy: Policy, *, rng: random.Random | None = None
) -> list[Verdict]:
    """Write the attempts, move their deliveries, and update their endpoints' failure state."""
    if not results:
        return []
    verdicts = [judge(r, policy, rng) for r in results]
    await session.execute(
        _RECORD,
        {
            "ids": [r.claim.delivery_id for r in results],
            "leases": [r.claim.lease_id for r in results],
            "statuses": [v.status for v in verdicts],
            "nexts": [v.next_attempt_at for v in verdicts],
            "attempted": [r.attempted_at for r in results],
            "codes": [r.outcome.status_code for r in results],
            "classes": [r.outcome.error_class for r in results],
            "reasons": [v.final_reason for v in verdicts],
            "finished": [r.finished_at for r in results],
        },
    )
    await session.execute(
        _ATTEMPTS,
        {
            "ids": new_ids(len(results)),
            "deliveries": [r.claim.delivery_id for r in results],
            "attempted": [r.attempted_at for r in results],
            "numbers": [r.claim.attempts + 1 for r in results],
            "codes": [r.outcome.status_code for r in results],
            "latencies": [r.outcome.latency_ms for r in results],
            "bodies": [r.outcome.body for r in results],
            "classes": [r.outcome.error_class for r in results],
            "errors": [r.outcome.error for r in results],
            "retries": [v.will_retry for v in verdicts],
            "nexts": [v.next_attempt_at for v in verdicts],
        },
    )
    await _endpoint_state(session, results, policy)
    return verdicts


async def _endpoint_state(session: AsyncSession, results: Sequence[Result], policy: Policy) -> None:
    by_endpoint: dict[uuid.UUID, list[Result]] = {}
    for r in results:
        by_endpoint.setdefault(r.claim.endpoint_id, []).append(r)
    for endpoint_id in sorted(by_endpoint):  # one lock order for every worker: no deadlock
        mine = by_endpoint[endpoint_id]
        now = max(r.finished_at for r in mine)
        if any(r.outcome.ok for r in mine):
            await session.execute(_ENDPOINT_SUCCEEDED, {"id": endpoint_id})
            continue
        gone = next((r for r in mine if r.outcome.error_class == "gone"), None)
        if gone is not None:
            reason = f"disabled at {now:%Y-%m-%d %H:%M} UTC: the endpoint answered 410 Gone"
            await session.execute(_DISABLE, {"id": endpoint_id, "reason": reason, "now": now})
            continue
        first = min(r.attempted_at for r in mine)
        row = (await session.execute(_ENDPOINT_FAILED, {"id": endpoint_id, "first": first})).one_or_none()
        if row is None or not row.enabled or row.failing_since > now - policy.disable_after:
            continue
        last = mine[-1].outcome.error or "failed"
        days = policy.disable_after.total_seconds() / 86400
        reason = (
            f"disabled at {now:%Y-%m-%d %H:%M} UTC: every attempt failed for {days:g} days "
            f"(since {row.failing_since:%Y-%m-%d %H:%M}); last: {last}"
        )[:200]
        await session.execute(_DISABLE, {"id": endpoint_id, "reason": reason, "now": now})
