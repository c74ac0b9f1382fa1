"""Which of our sent messages an inbound message is about.

In order, the first that finds one wins (``method`` is stored with the inbound row):

1. ``message_id``: the Message-ID quoted by a report (the returned ``message/rfc822`` or
   ``text/rfc822-headers`` part) or an auto-reply's ``In-Reply-To``;
2. ``in_reply_to`` / ``references``: a reply's threading headers, newest reference first (an answer we
   sent from the inbox, ``outbound_replies``, stands for the message it answered);
3. ``sender`` (replies and auto-replies): the From address is a contact of the workspace with an
   enrollment sent from this account (an active one first, then the most recently changed); the match is
   that enrollment's latest sent message;
4. ``recipient`` (bounces and complaints without a usable Message-ID): the same, by the failed
   recipient's address.

Only messages of the same workspace match; ids, never addresses alone, decide for the first two. A batch of
messages (several mailboxes' polls) is matched with at most two queries whatever its size (``lookup_many``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify import Classification


@dataclass(frozen=True)
class Match:
    method: str
    message_id: uuid.UUID
    enrollment_id: uuid.UUID
    campaign_id: uuid.UUID
    contact_id: uuid.UUID
    account_id: uuid.UUID | None
    to_email: str
    step: int


@dataclass
class Lookup:
    """What one batch's lookups found: its matches, in order, and which of its Message-IDs are ours."""

    matches: list[Match | None] = field(default_factory=list)
    ours: set[str] = field(default_factory=set)


_BY_IDS = text(
    """
    SELECT m.workspace_id, m.message_id_header AS header, m.id, m.enrollment_id, m.campaign_id, m.contact_id,
           m.account_id, m.to_email, m.step, true AS sent_by_us
    FROM messages m
    WHERE m.message_id_header = ANY(:ids) AND m.workspace_id = ANY(:ws)
    UNION ALL
    SELECT r.workspace_id, r.message_id_header, m.id, m.enrollment_id, m.campaign_id, m.contact_id, m.account_id,
           m.to_email, m.step, false
    FROM outbound_replies r
    JOIN inbound_messages i ON i.id = r.inbound_message_id
    JOIN messages m ON m.id = i.sent_message_id
    WHERE r.message_id_header = ANY(:ids) AND r.workspace_id = ANY(:ws)
    """
)
_BY_ADDRESS = text(
    """
    SELECT DISTINCT ON (w.account_id, lower(c.email)) w.account_id AS wanted_account, lower(c.email) AS address,
           m.id, m.enrollment_id, m.campaign_id, m.contact_id, m.account_id, m.to_email, m.step
    FROM unnest(CAST(:ws AS uuid[]), CAST(:accounts AS uuid[]), CAST(:addresses AS text[]))
         AS w(workspace_id, account_id, address)
    JOIN contacts c ON c.workspace_id = w.workspace_id AND lower(c.email) = w.address
    JOIN enrollments e ON e.contact_id = c.id AND e.account_id = w.account_id
    JOIN messages m ON m.enrollment_id = e.id AND m.sent_at IS NOT NULL
    ORDER BY w.account_id, lower(c.email), (e.status = 'active') DESC, e.updated_at DESC, m.step DESC
    """
)


def _bracketed(value: str) -> str:
    return value if value.startswith("<") else f"<{value}>"


def _candidates(verdict: Classification) -> tuple[list[tuple[str, str]], str]:
    """``[(bracketed id, method)]`` in the order they are tried, and the address to fall back on."""
    ids: list[tuple[str, str]] = []
    if verdict.original_message_id:
        ids.append((_bracketed(verdict.original_message_id), "message_id"))
    address = ""
    if verdict.kind in ("reply", "auto_reply", "other"):
        for value in dict.fromkeys([verdict.in_reply_to, *reversed(verdict.references)]):
            if value:
                ids.append((_bracketed(value), "in_reply_to"))
        address = verdict.from_address
    elif verdict.kind in ("bounce", "complaint", "delivery_report"):
        address = verdict.original_recipient or next((r.address for r in verdict.recipients if r.address), "")
    return ids, address.lower()


def _match(row: object, method: str) -> Match:
    return Match(
        method=method,
        message_id=row.id,  # type: ignore[attr-defined]
        enrollment_id=row.enrollment_id,  # type: ignore[attr-defined]
        campaign_id=row.campaign_id,  # type: ignore[attr-defined]
        contact_id=row.contact_id,  # type: ignore[attr-defined]
        account_id=row.account_id,  # type: ignore[attr-defined]
        to_email=row.to_email,  # type: ignore[attr-defined]
        step=row.step,  # type: ignore[attr-defined]
    )


Group = tuple[uuid.UUID, uuid.UUID, Sequence[Classification]]
"""``(workspace_id, account_id, verdicts)``: one mailbox's messages of a batch."""


async def lookup_many(session: AsyncSession, groups: Sequence[Group]) -> list[Lookup]:
    """``lookup`` for the messages of several mailboxes at once: two queries whatever their number."""
    plans = [[_candidates(v) for v in verdicts] for _, _, verdicts in groups]
    wanted: set[str] = set()
    for (_, _, verdicts), plan in zip(groups, plans, strict=True):
        wanted |= {i for ids, _ in plan for i, _ in ids}
        wanted |= {_bracketed(v.message_id) for v in verdicts if v.message_id}
    workspaces = sorted({ws for ws, _, _ in groups})
    by_id: dict[tuple[uuid.UUID, str], object] = {}
    ours: dict[uuid.UUID, set[str]] = {}
    if wanted:
        for row in await session.execute(_BY_IDS, {"ids": sorted(wanted), "ws": workspaces}):
            by_id.setdefault((row.workspace_id, row.header), row)
            if row.sent_by_us:
                ours.setdefault(row.workspace_id, set()).add(row.header.strip("<>"))
    results: list[Lookup] = []
    asks: list[tuple[uuid.UUID, uuid.UUID, str]] = []
    for (ws, account_id, _), plan in zip(groups, plans, strict=True):
        found: list[Match | None] = []
        for ids, address in plan:
            first = next(((by_id[(ws, i)], method) for i, method in ids if (ws, i) in by_id), None)
            found.append(_match(*first) if first else None)
            if first is None and address:
                asks.append((ws, account_id, address))
        results.append(Lookup(matches=found, ours=ours.get(ws, set())))
    if asks:
        unique = sorted(set(asks))
        rows = await session.execute(
            _BY_ADDRESS,
            {"ws": [a[0] for a in unique], "accounts": [a[1] for a in unique], "addresses": [a[2] for a in unique]},
        )
        by_address = {(row.wanted_account, row.address): row for row in rows}
        for (_, account_id, verdicts), plan, result in zip(groups, plans, results, strict=True):
            for n, (_, address) in enumerate(plan):
                hit = by_address.get((account_id, address))
                if result.matches[n] is None and hit is not None:
                    personal = verdicts[n].kind in ("reply", "auto_reply", "other")
                    result.matches[n] = _match(hit, "sender" if personal else "recipient")
    return results
