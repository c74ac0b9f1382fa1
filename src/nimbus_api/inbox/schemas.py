"""The unified inbox's request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import NO_NUL_PATTERN, PatchModel, StrictModel, not_null

InboundKind = TypeAliasType(
    "InboundKind", Literal["reply", "auto_reply", "bounce", "delivery_report", "complaint", "other"]
)


class InboundRecipient(BaseModel):
    """A recipient a bounce or delivery report is about."""

    address: str
    action: str = Field(description="`failed`, `delayed`, `delivered`, `relayed` or `expanded`.")
    status: str = Field(description="Enhanced status code as in the message (`5.1.1`), or empty.")
    hard: bool = Field(description="The address itself is bad (suppressed).")
    permanent: bool = Field(description="This message will not be delivered to it (any 5xx / failed).")
    reason: str = Field(description="`userunknown`, `mailboxfull`, `blocked`... (README: classification).")
    diagnostic: str


class Classification(BaseModel):
    kind: InboundKind
    detected_kind: InboundKind = Field(
        description="What the message itself says, before matching (a `reply` that matches nothing is `other`)."
    )
    reasons: list[str] = Field(description="The rules that fired, in order (README: reading the reasons).")
    recipients: list[InboundRecipient]
    original_message_id: str | None = Field(description="The Message-ID of ours the report or answer quotes.")
    feedback_type: str | None = Field(description="Complaints: the report's Feedback-Type.")
    parse_notes: list[str] = Field(description="What was wrong with the message (broken MIME, truncated...).")


class InboxMatch(BaseModel):
    method: str = Field(description="`message_id`, `in_reply_to`, `sender` or `recipient` (README).")
    sent_message_id: uuid.UUID | None
    enrollment_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    campaign_id: uuid.UUID | None


class InboxItem(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    folder: str
    kind: InboundKind
    from_address: str | None
    from_name: str | None
    subject: str | None
    snippet: str | None = Field(description="The start of the new text (quotes removed).")
    date: datetime | None = Field(description="The message's Date header.")
    received_at: datetime = Field(description="When the sync stored it.")
    read: bool
    archived: bool
    campaign_id: uuid.UUID | None
    enrollment_id: uuid.UUID | None
    contact_id: uuid.UUID | None


class InboxPage(BaseModel):
    data: list[InboxItem]
    next_cursor: str | None


class Header(BaseModel):
    name: str
    value: str


class InboxMessageRead(InboxItem):
    to: str | None
    message_id: str | None
    headers: list[Header]
    text: str | None = Field(description="The first text/plain part.")
    html: str | None = Field(
        description="The first text/html part, as received: UNTRUSTED. Render it only sandboxed (no scripts, "
        "no remote content) or not at all."
    )
    html_untrusted: bool = Field(default=True, description="Always true: the HTML came from outside.")
    new_text: str | None = Field(description="What the sender wrote, without the quoted history and signature.")
    size: int
    truncated: bool = Field(description="Over the size cap: only the header and first part were fetched.")
    match: InboxMatch | None
    classification: Classification
    replies: list[OutboundReplyRead]


class InboxUpdate(PatchModel):
    read: bool | None = not_null(description="Mark read (true) or unread (false).")
    archived: bool | None = not_null(description="Archive (true: left out of the default list) or restore.")


class InboxReplyCreate(StrictModel):
    text: Annotated[
        str, Field(min_length=1, max_length=100_000, pattern=NO_NUL_PATTERN, description="Plain-text body.")
    ]
    html: Annotated[
        str | None, Field(max_length=500_000, pattern=NO_NUL_PATTERN, description="Optional HTML alternative.")
    ] = None


class OutboundReplyRead(BaseModel):
    id: uuid.UUID
    inbound_message_id: uuid.UUID
    account_id: uuid.UUID
    to: str
    subject: str
    message_id: str
    in_reply_to: str | None
    reply_code: int | None = Field(description="The server's answer to the message.")
    sent_at: datetime


InboxMessageRead.model_rebuild()
