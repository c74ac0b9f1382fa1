"""A notification's reports, recorded once and applied through the inbox's effects (``inbox.effects``).

Per report, in the request's transaction:

1. **Once**: a ``provider_hook_events`` row ``(hook, event id)``, ``INSERT ... ON CONFLICT DO NOTHING``; a
   report whose row exists (the provider retried, or someone replayed it) is a duplicate and does nothing.
2. **Match**: our message of the hook's workspace by the Message-ID the provider quotes (SES ``mail.headers``,
   SendGrid ``smtp-id``, Mailgun ``message.headers.message-id``, SMTP2GO ``message-id``), else by the
   provider's own message id as our sender saw it in the 250 reply to DATA (``messages.reply_text``: SES
   ``Ok <id>``, SendGrid ``queued as <id>``, SMTP2GO ``id=<id>``, Postmark's MessageID), among the
   messages sent to that recipient. Never by the address alone: a report that names no message of ours is
   recorded ``unmatched`` and changes nothing.
3. **Apply**: ``effects.apply`` with the bounce's recipient or the complaint, exactly as for a DSN or a
   feedback report read from the inbox: a hard bounce suppresses, stops the enrollment and counts toward
   the bounce rate; a soft one is recorded only; a complaint suppresses and counts. A message already
   ``bounced`` is not counted again, and a complaint is counted once per message and recipient
   (``message_reports``), whichever way the report arrived first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify import Classification
from nimbus_api.inbox import effects
from nimbus_api.inbox.ingest import Target
from nimbus_api.inbox.matching import Match
from nimbus_api.kit.ids import new_id
from nimbus_api.models import EmailAccount, ProviderHook, ProviderHookEvent
from nimbus_api.provider_hooks.reports import Report
from nimbus_api.stages.cooldown import CooldownRules

_BY_HEADER = text(
    """
    SELECT id, enrollment_id, campaign_id, contact_id, account_id, to_email, step
    FROM messages WHERE message_id_header = :header AND workspace_id = :ws
    """
)
# The recipient's messages in the workspace (through the contact, indexed), whose 250 reply names the id.
_BY_PROVIDER_ID = text(
    """
    SELECT m.id, m.enrollment_id, m.campaign_id, m.contact_id, m.account_id, m.to_email, m.step
    FROM contacts c
    JOIN enrollments e ON e.contact_id = c.id
    JOIN messages m ON m.enrollment_id = e.id
    WHERE c.workspace_id = :ws AND lower(c.email) = :email AND m.sent_at IS NOT NULL
      AND strpos(m.reply_text, :provider_id) > 0
    ORDER BY m.sent_at DESC LIMIT 1
    """
)


@dataclass(frozen=True)
class Rules:
    min_sample: int = 20
    cooldown: CooldownRules = field(default_factory=CooldownRules)


@dataclass
class Tally:
    received: int = 0
    applied: int = 0
    unmatched: int = 0
    duplicates: int = 0
    ignored: int = 0


async def seen_before(session: AsyncSession, hook: ProviderHook, event_id: str, kind: str) -> bool:
    """Record ``event_id`` for the hook; whether it was already there."""
    inserted = await session.scalar(
        insert(ProviderHookEvent)
        .values(
            id=new_id(), hook_id=hook.id, workspace_id=hook.workspace_id, event_id=event_id[:300],
            kind=kind, outcome="received",
        )
        .on_conflict_do_nothing()
        .returning(ProviderHookEvent.id)
    )  # fmt: skip
    return inserted is None


async def _match(session: AsyncSession, workspace_id: uuid.UUID, report: Report) -> Match | None:
    row = None
    method = "message_id"
    if report.message_id_header:
        header = f"<{report.message_id_header}>"
        row = (await session.execute(_BY_HEADER, {"header": header, "ws": workspace_id})).first()
    if row is None and report.provider_message_id and len(report.provider_message_id) >= 8 and report.email:
        method = "provider_message_id"
        params = {"ws": workspace_id, "email": report.email.lower(), "provider_id": report.provider_message_id}
        row = (await session.execute(_BY_PROVIDER_ID, params)).first()
    if row is None or row.to_email.lower() != report.email.lower():
        return None
    return Match(
        method, row.id, row.enrollment_id, row.campaign_id, row.contact_id, row.account_id, row.to_email, row.step
    )


async def _apply_one(
    session: AsyncSession, hook: ProviderHook, report: Report, rules: Rules
) -> tuple[str, uuid.UUID | None]:
    if report.kind == "other":
        return "ignored", None
    found = await _match(session, hook.workspace_id, report)
    if found is None or found.account_id is None:
        return "unmatched", None
    account = await session.get_one(EmailAccount, found.account_id)
    target = Target(
        account_id=found.account_id,
        workspace_id=hook.workspace_id,
        email=account.email,
        min_sample=rules.min_sample,
        cooldown=rules.cooldown,
    )
    recipients = (report.recipient,) if report.recipient is not None else ()
    verdict = Classification(
        kind=report.kind,
        reasons=(f"provider_hook:{hook.provider}",),
        recipients=recipients,
        original_message_id=report.message_id_header,
        original_recipient=report.email,
        feedback_type=report.feedback_type,
    )
    row = {"id": None, "kind": report.kind, "source": "provider_hook"}
    effect = await effects.apply(session, target, row, verdict, found)
    if effect.action == "none" and report.kind == "bounce":
        return "soft_bounce", found.message_id
    return effect.action, found.message_id


async def apply(
    session: AsyncSession, hook: ProviderHook, reports: Sequence[Report], rules: Rules, now: datetime
) -> Tally:
    tally = Tally()
    for report in reports:
        if report.kind != "other":
            tally.received += 1
        if await seen_before(session, hook, report.event_id, report.kind):
            tally.duplicates += 1
            continue
        outcome, message_id = await _apply_one(session, hook, report, rules)
        await session.execute(
            update(ProviderHookEvent)
            .where(ProviderHookEvent.hook_id == hook.id, ProviderHookEvent.event_id == report.event_id[:300])
            .values(outcome=outcome[:30], email=report.email[:320] or None, message_id=message_id)
        )
        if outcome == "unmatched":
            tally.unmatched += 1
        elif outcome in ("ignored", "soft_bounce", "none"):
            tally.ignored += 1
        else:
            tally.applied += 1
    hook.last_received_at = now
    return tally
