from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from nimbus_api.api.deps import AuthContext, Session, SettingsDep, VaultDep, VerifierDep
from nimbus_api.api.query import IsoDateTime
from nimbus_api.inbox import replies, service
from nimbus_api.inbox.schemas import (
    InboundKind,
    InboxMessageRead,
    InboxPage,
    InboxReplyCreate,
    InboxUpdate,
    OutboundReplyRead,
)
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses

router = APIRouter(prefix="/v1/inbox", tags=["inbox"], responses=problem_responses(401))
_ONE = problem_responses(404, 422, codes={404: ["inbox.not_found"]})


@router.get(
    "",
    name="inbox_list",
    summary="List inbound messages across the workspace's inboxes",
    responses=problem_responses(422),
)
async def inbox_list(
    auth: AuthContext,
    session: Session,
    account_id: uuid.UUID | None = None,
    campaign_id: uuid.UUID | None = None,
    kind: InboundKind | None = None,
    unread: Annotated[bool | None, Query(description="true: unread only; false: read only.")] = None,
    archived: Annotated[bool, Query(description="true: the archived messages instead of the others.")] = False,
    since: Annotated[IsoDateTime | None, Query(description="Stored at or after (ISO 8601).")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> InboxPage:
    """Newest first: what the IMAP sync stored from every inbox of the workspace (INBOX and Junk), each
    classified (reply, auto_reply, bounce, delivery_report, complaint, other) and matched to the campaign,
    enrollment and contact it answers when it does. Our own messages found there are not listed."""
    filters = service.InboxFilters(
        account_id=account_id, campaign_id=campaign_id, kind=kind, unread=unread, archived=archived, since=since
    )
    rows, next_cursor = await service.list_page(session, auth.workspace_id, filters, cursor, limit)
    return InboxPage(data=[service.to_item(r) for r in rows], next_cursor=next_cursor)


@router.get("/{message_id}", name="inbox_get", summary="Get an inbound message", responses=_ONE)
async def inbox_get(message_id: uuid.UUID, auth: AuthContext, session: Session) -> InboxMessageRead:
    """Headers, the text and HTML bodies (the HTML is untrusted: render it sandboxed or not at all), the
    new text without quotes, what it matched, and its classification with the reasons behind it."""
    row = await service.get(session, auth.workspace_id, message_id)
    return await service.to_read(session, row)


@router.patch("/{message_id}", name="inbox_update", summary="Mark an inbound message read or archived", responses=_ONE)
async def inbox_update(
    message_id: uuid.UUID, payload: InboxUpdate, auth: AuthContext, session: Session
) -> InboxMessageRead:
    row = await service.get(session, auth.workspace_id, message_id, for_update=True)
    await service.update(session, row, payload)
    return await service.to_read(session, row)


@router.post(
    "/{message_id}/reply",
    name="inbox_reply",
    summary="Answer an inbound message from the inbox it came to",
    status_code=201,
    responses=problem_responses(
        404,
        409,
        422,
        502,
        codes={
            404: ["inbox.not_found"],
            409: [
                "inbox.not_replyable",
                "inbox.recipient_suppressed",
                "inbox.account_unavailable",
                "inbox.budget_exhausted",
            ],
            502: ["inbox.reply_failed"],
        },
    ),
)
async def inbox_reply(
    message_id: uuid.UUID,
    payload: InboxReplyCreate,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    verifier: VerifierDep,
    settings: SettingsDep,
) -> OutboundReplyRead:
    """Sent through the same account's SMTP server, threaded (`Re:`, `In-Reply-To`, `References`), counted
    in its daily budget and stored, so the prospect's next answer matches it. Answered once the server
    accepted it (201); a server that refuses is a 502 `inbox.reply_failed` with its code, and counts nothing."""
    row = await service.get(session, auth.workspace_id, message_id)
    reply = await replies.send_reply(session, vault, verifier.net, row, payload, actor=auth.actor, settings=settings)
    return service.reply_read(reply)
