"""A random fleet of inboxes with raw activity rows, and the health inputs read back from those rows in Python.

``seed_fleet`` bulk-loads, set-based (``INSERT ... SELECT generate_series``): domains with random DNS and
blocklist verdicts, inboxes with random warmup progress, sync rows in every state, daily usage (sends,
bounces, complaints) over the last 10 days, messages (sent or not, some outside the 7-day window), failed
attempts with connection, login and other error codes, pauses (for a refused login or other reasons), and
inbound messages of every kind. Activity is
skewed (a few inboxes get much, many little) and a tenth of the inboxes get none, so every branch of the
formula is met: below and above each minimum sample, each verdict.

``load_inputs`` reads the same rows back (those of the window, by the indexes a per-inbox loader would use)
and computes each inbox's ``score.Inputs`` in plain Python, with none of the recompute's SQL: the
independent side of the comparison (tests/health/test_recompute.py, and the per-inbox baseline of
bench/bench_health.py).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.health import score
from nimbus_api.kit.db import utc_day
from nimbus_api.models import Campaign

ERROR_CODES = [
    *score.CONNECTION_FAILURE_CODES,
    *score.AUTH_FAILURE_CODES,
    "smtp.throttled",
    "smtp.recipient_rejected",
    "smtp.rejected",
    "smtp.relay_denied",
]
KINDS = ["reply", "reply", "reply", "auto_reply", "bounce", "complaint", "delivery_report", "other"]


@dataclass(frozen=True)
class Fleet:
    workspace_id: uuid.UUID
    account_ids: list[uuid.UUID]


async def seed_fleet(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    inboxes: int,
    messages: int,
    attempts: int,
    inbound: int,
    now: datetime,
    span_days: float = 8.0,
    progress: Callable[[str], None] | None = None,
    chunk: int = 200_000,
) -> Fleet:
    """Load a fleet into the workspace (the caller commits). Timestamps fall in ``now - span_days .. now``."""
    say = progress or (lambda _: None)
    tag = uuid.uuid4().hex[:8]
    params: dict[str, Any] = {"ws": workspace_id, "now": now, "tag": tag, "span": span_days}
    await session.execute(
        text(
            """
            INSERT INTO domains (id, workspace_id, name, is_paused, dns_status, blocklist_status, created_at,
                                 updated_at)
            SELECT gen_random_uuid(), :ws, 'd' || g || '-' || :tag || '.example', false,
                   (ARRAY['unknown', 'pass', 'pass', 'warn', 'fail'])[1 + floor(random() * 5)::int],
                   (ARRAY['unknown', 'clean', 'clean', 'clean', 'listed'])[1 + floor(random() * 5)::int],
                   :now, :now
            FROM generate_series(1, :domains) g
            """
        ),
        params | {"domains": max(1, inboxes // 20)},
    )
    await session.execute(
        text(
            """
            WITH d AS (SELECT array_agg(id) AS ids FROM domains WHERE workspace_id = :ws)
            INSERT INTO email_accounts (
                id, workspace_id, domain_id, email, provider, smtp_host, smtp_port, smtp_mode,
                smtp_allow_plaintext_auth, imap_allow_plaintext_auth, daily_send_limit, max_connections,
                min_send_interval_seconds, sync_interval_seconds, campaign_types, is_active, overall_score,
                reputation_score, warmup_progress, current_stage, bounce_rate_7d, complaint_rate_7d,
                warmup_enabled, warmup_sent_total, health_band, credentials_version, created_at, updated_at)
            SELECT gen_random_uuid(), :ws, d.ids[1 + floor(random() * array_length(d.ids, 1))::int],
                   'inbox' || g || '-' || :tag || '@fleet.example', 'custom', '127.0.0.1', 25, 'none',
                   false, false, 100, 1, 0, 120, ARRAY['cold']::varchar[], true, 50, 50,
                   CASE WHEN random() < 0.3 THEN 0 ELSE random() * 110 - 5 END, 0, 0, 0,
                   false, floor(random() * 500)::int, 'watch', 1, :now, :now
            FROM generate_series(1, :inboxes) g, d
            """
        ),
        params | {"inboxes": inboxes},
    )
    ids = list(
        await session.scalars(
            text("SELECT id FROM email_accounts WHERE workspace_id = :ws ORDER BY id"), {"ws": workspace_id}
        )
    )
    say(f"{len(ids)} inboxes")
    active = max(1, (len(ids) * 9) // 10)  # the last tenth gets no activity at all
    act = params | {"ids": ids, "active": active}
    ago = "CAST(:now AS timestamptz) - random() * CAST(:span AS float8) * interval '1 day'"
    pick = "(CAST(:ids AS uuid[]))[1 + floor(CAST(:active AS integer) * power(random(), 1.6))::int]"
    await session.execute(
        text(
            """
            INSERT INTO mailbox_syncs (account_id, workspace_id, status, next_poll_at, consecutive_failures,
                                       messages_stored, created_at, updated_at)
            SELECT a.id, :ws, s.status, :now, CASE WHEN s.status = 'failing' THEN floor(random() * 8)::int ELSE 0 END,
                   0, :now, :now
            FROM unnest(CAST(:ids AS uuid[])) a(id)
            CROSS JOIN LATERAL (SELECT (ARRAY['pending', 'ok', 'ok', 'failing'])[1 + floor(random() * 4)::int]
                                       AS status, a.id AS _) s
            WHERE random() < 0.7
            """
        ),
        act,
    )
    await session.execute(
        text(
            """
            INSERT INTO account_daily_usage (account_id, day, sends, new_contacts, bounces, complaints)
            SELECT a.id, CAST(:today AS date) - d, r.sends, 0,
                   floor(power(random(), 2) * r.sends * 0.12)::int,
                   CASE WHEN random() < 0.25 THEN floor(random() * 3)::int ELSE 0 END
            FROM unnest((CAST(:ids AS uuid[]))[1:CAST(:active AS integer)]) a(id)
            CROSS JOIN generate_series(0, 9) d
            CROSS JOIN LATERAL (SELECT floor(power(random(), 2) * 80)::int AS sends, d AS _) r
            WHERE random() < 0.6
            """
        ),
        act | {"today": utc_day(now)},
    )
    campaign = Campaign(workspace_id=workspace_id, name=f"fleet {tag}", type="cold", status="active")
    session.add(campaign)
    await session.flush()
    await session.execute(
        text(
            """
            INSERT INTO contacts (id, workspace_id, email, fields, created_at, updated_at)
            SELECT gen_random_uuid(), :ws, 'c' || n || '-' || :tag || '@example.org', '{}', :now, :now
            FROM generate_series(1, CAST(:active AS integer)) n
            """
        ),
        act,
    )
    await session.execute(
        text(
            """
            INSERT INTO enrollments (id, workspace_id, campaign_id, contact_id, status, next_step, account_id,
                                     inbox_handoffs, unsubscribe_token, created_at, updated_at)
            SELECT gen_random_uuid(), :ws, :campaign, c.id, 'active', 0, (CAST(:ids AS uuid[]))[c.n], 0,
                   md5(random()::text || c.id::text), :now, :now
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM contacts WHERE workspace_id = :ws) c
            WHERE c.n <= CAST(:active AS integer)
            """
        ),
        act | {"campaign": campaign.id},
    )
    for start in range(1, messages + 1, chunk):
        end = min(messages, start + chunk - 1)
        await session.execute(
            text(
                f"""
                INSERT INTO messages (id, enrollment_id, workspace_id, campaign_id, contact_id, account_id, step,
                                      state, to_email, subject, message_id_header, attempts, sent_at, created_at,
                                      updated_at)
                SELECT gen_random_uuid(), e.id, :ws, :campaign, e.contact_id, r.account_id, r.g,
                       CASE WHEN r.sent THEN (CASE WHEN random() < 0.05 THEN 'bounced' ELSE 'sent' END)
                            ELSE 'queued' END,
                       'to@example.org', 's', 'fleet-' || r.g || '-' || :tag || '@fleet.example', 1,
                       CASE WHEN r.sent THEN {ago} END, :now, :now
                FROM (SELECT g, {pick} AS account_id, random() < 0.85 AS sent
                      FROM generate_series(CAST(:start AS integer), CAST(:end AS integer)) g) r
                JOIN enrollments e ON e.account_id = r.account_id AND e.campaign_id = :campaign
                """
            ),
            act | {"campaign": campaign.id, "start": start, "end": end},
        )
        say(f"messages {end}/{messages}")
    await session.execute(
        text(
            f"""
            INSERT INTO send_attempts (id, message_id, account_id, outcome, error_code, started_at, finished_at)
            SELECT gen_random_uuid(), m.id, m.account_id, 'transient',
                   CASE WHEN random() < 0.1 THEN NULL
                        ELSE (CAST(:codes AS varchar[]))[1 + floor(random() * CAST(:ncodes AS integer))::int] END,
                   {ago}, :now
            FROM (SELECT id, account_id FROM messages WHERE workspace_id = :ws ORDER BY random() LIMIT :attempts) m
            """
        ),
        act | {"codes": ERROR_CODES, "ncodes": len(ERROR_CODES), "attempts": attempts},
    )
    await session.execute(
        text(
            f"""
            INSERT INTO account_events (id, workspace_id, account_id, kind, actor, detail, created_at)
            SELECT gen_random_uuid(), :ws, r.account_id, 'paused', 'system:sender',
                   jsonb_build_object('reason', (ARRAY['smtp.auth_failed', 'smtp.auth_failed', 'smtp.relay_denied',
                                                       'smtp.tls_certificate_invalid'])[1 + floor(random() * 4)::int]),
                   {ago}
            FROM (SELECT g, {pick} AS account_id FROM generate_series(1, CAST(:pauses AS integer)) g) r
            """
        ),
        act | {"pauses": max(1, inboxes // 3)},
    )
    say(f"{attempts} attempts")
    await session.execute(
        text(
            f"""
            INSERT INTO inbound_messages (id, workspace_id, account_id, folder, uidvalidity, uid, dedupe_key, kind,
                                          reasons, classification, size, truncated, raw, created_at)
            SELECT gen_random_uuid(), :ws, r.account_id, 'INBOX', 1, r.g, 'k' || r.g || '-' || :tag,
                   (CAST(:kinds AS varchar[]))[1 + floor(random() * CAST(:nkinds AS integer))::int],
                   '[]', '{{}}', 0, false, ''::bytea, {ago}
            FROM (SELECT g, {pick} AS account_id FROM generate_series(1, CAST(:inbound AS integer)) g) r
            """
        ),
        act | {"kinds": KINDS, "nkinds": len(KINDS), "inbound": inbound},
    )
    say(f"{inbound} inbound messages")
    return Fleet(workspace_id, ids)


# --- the independent side: raw rows -> Inputs, in Python ------------------------------------------------------


async def load_inputs(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, score.Inputs]:
    """Each inbox's inputs, from its raw rows, aggregated here in Python (the rules of ``score``'s docstring)."""
    ids = list(account_ids)
    since = now - timedelta(days=score.WINDOW_DAYS)
    first_day = utc_day(now) - timedelta(days=score.WINDOW_DAYS - 1)
    p = {"ids": ids, "since": since, "first_day": first_day}
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for account_id, day, sends, bounces, complaints in await session.execute(
        text(
            "SELECT account_id, day, sends, bounces, complaints FROM account_daily_usage "
            "WHERE account_id = ANY(:ids) AND day >= :first_day"
        ),
        p,
    ):
        if first_day <= day <= utc_day(now):
            c = counts[account_id]
            c["sends"] += sends
            c["bounces"] += bounces
            c["complaints"] += complaints
    for account_id, sent_at in await session.execute(
        text("SELECT account_id, sent_at FROM messages WHERE account_id = ANY(:ids) AND sent_at >= :since"), p
    ):
        if sent_at is not None and sent_at >= since:
            counts[account_id]["accepted"] += 1
    for account_id, started_at, error_code in await session.execute(
        text(
            "SELECT account_id, started_at, error_code FROM send_attempts "
            "WHERE account_id = ANY(:ids) AND started_at >= :since"
        ),
        p,
    ):
        if started_at >= since:
            c = counts[account_id]
            c["failed_attempts"] += 1
            c["connection_failures"] += error_code in score.CONNECTION_FAILURE_CODES
    for account_id, reason, created_at in await session.execute(
        text(
            "SELECT account_id, detail ->> 'reason', created_at FROM account_events "
            "WHERE account_id = ANY(:ids) AND kind = 'paused' AND created_at >= :since"
        ),
        p,
    ):
        if created_at >= since:
            counts[account_id]["auth_failures"] += reason in score.AUTH_FAILURE_CODES
    for account_id, kind, created_at in await session.execute(
        text(
            "SELECT account_id, kind, created_at FROM inbound_messages "
            "WHERE account_id = ANY(:ids) AND kind = 'reply' AND created_at >= :since"
        ),
        p,
    ):
        if kind == "reply" and created_at >= since:
            counts[account_id]["replies"] += 1
    syncs = {
        account_id: (status, failures)
        for account_id, status, failures in await session.execute(
            text("SELECT account_id, status, consecutive_failures FROM mailbox_syncs WHERE account_id = ANY(:ids)"), p
        )
    }
    out = {}
    for account_id, progress, sent_total, dns, blocklist in await session.execute(
        text(
            "SELECT a.id, a.warmup_progress, a.warmup_sent_total, d.dns_status, d.blocklist_status "
            "FROM email_accounts a JOIN domains d ON d.id = a.domain_id WHERE a.id = ANY(:ids)"
        ),
        p,
    ):
        c = counts[account_id]
        status, failures = syncs.get(account_id, (None, 0))
        out[account_id] = score.Inputs(
            sends=c["sends"],
            bounces=c["bounces"],
            complaints=c["complaints"],
            accepted=c["accepted"],
            failed_attempts=c["failed_attempts"],
            connection_failures=c["connection_failures"],
            auth_failures=c["auth_failures"],
            replies=c["replies"],
            sync_status=status,
            sync_failures=failures,
            dns_status=dns,
            blocklist_status=blocklist,
            warmup_progress=progress,
            warmup_sent_total=sent_total,
        )
    return out
