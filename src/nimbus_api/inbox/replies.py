"""Answering an inbound message from the inbox it came to: ``POST /v1/inbox/{id}/reply``.

The answer goes out through the same account's SMTP server (its own connection, like a mail client's),
threaded: ``Re:`` subject, ``In-Reply-To`` the message's Message-ID, ``References`` its references plus
that id, a new Message-ID on the account's domain. It is stored (``outbound_replies``) so the next answer
from the prospect matches it, and counted in the account's daily budget.

Order, so that no lock is held while a remote server is talked to: the budget is checked first (a read),
the message sent, then the send is counted and the reply stored in the request's transaction. Two sends
racing for an inbox's last unit of budget may therefore exceed it by one; a refused send counts nothing.
Reports from mail systems (bounces, complaints, delivery reports) and suppressed addresses are refused.
"""

from __future__ import annotations

import email.utils
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.classify.reply import REPLY_PREFIX_RE
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.inbox.errors import (
    AccountUnavailable,
    BudgetExhausted,
    NotReplyable,
    RecipientSuppressed,
    ReplyRefused,
)
from nimbus_api.inbox.schemas import InboxReplyCreate
from nimbus_api.kit.db import utc_day, utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.models import AccountDailyUsage, EmailAccount, InboundMessage, OutboundReply, Suppression
from nimbus_api.oauth.sources import LoginUnavailable, auth_kind, login_secret
from nimbus_api.sending.mime import HeaderInjection, new_message_id
from nimbus_api.smtp import SmtpError, SmtpServer, send_test_message
from nimbus_api.stages.limits import effective_limit

NOT_REPLYABLE = frozenset({"bounce", "complaint", "delivery_report"})
_COUNT = text(
    """
    INSERT INTO account_daily_usage AS u (account_id, day, sends, new_contacts, bounces, complaints)
    VALUES (:account_id, :day, 1, 0, 0, 0)
    ON CONFLICT (account_id, day) DO UPDATE SET sends = u.sends + 1
    """
)


def _recipient(row: InboundMessage) -> str:
    raw = row.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    parsed = email.message_from_bytes(raw)
    for name in ("Reply-To", "From"):
        _, address = email.utils.parseaddr(str(parsed.get(name, "")))
        if "@" in address:
            return address
    return row.from_address or ""


def _references(row: InboundMessage) -> list[str]:
    raw = row.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    parsed = email.message_from_bytes(raw)
    refs = str(parsed.get("References", "")).split()
    own = row.message_id_header
    if own:
        refs.append(f"<{own}>")
    return [r for r in dict.fromkeys(refs) if r.startswith("<") and r.endswith(">")][-20:]


def build_reply(
    account: EmailAccount, row: InboundMessage, to: str, payload: InboxReplyCreate, message_id: str, now: datetime
) -> EmailMessage:
    subject = (row.subject or "").strip()
    if not REPLY_PREFIX_RE.match(subject):
        subject = f"Re: {subject}" if subject else "Re:"
    for value in (subject, to, message_id):
        if any(ch in value for ch in "\r\n\x00"):
            raise HeaderInjection("a header value contains a line break")
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((account.from_name or "", account.email))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = message_id
    if row.message_id_header:
        msg["In-Reply-To"] = f"<{row.message_id_header}>"
    references = _references(row)
    if references:
        msg["References"] = " ".join(references)
    if account.reply_to:
        msg["Reply-To"] = account.reply_to
    msg.set_content(payload.text)
    if payload.html:
        msg.add_alternative(payload.html, subtype="html")
    return msg


async def send_reply(
    session: AsyncSession,
    vault: Vault,
    net: NetContext,
    row: InboundMessage,
    payload: InboxReplyCreate,
    *,
    actor: Actor,
    settings: Settings | None = None,
) -> OutboundReply:
    """``settings``: an OAuth account's token refresh needs them (``oauth.sources.login_secret``)."""
    if row.kind in NOT_REPLYABLE:
        raise NotReplyable(f"this message is a {row.kind.replace('_', ' ')}; its sender is a mail system")
    account = await session.get_one(EmailAccount, row.account_id)
    if account.disabled_at is not None:
        # (a person's pause, ``is_active`` false, stops campaigns, not a person's own answer)
        raise AccountUnavailable(
            f"{account.email} was disabled ({account.disabled_reason or 'by the platform'}); fix it to answer from it"
        )
    to = _recipient(row)
    if "@" not in to:
        raise NotReplyable("the message has no address to answer to")
    suppressed = await session.scalar(
        select(Suppression.reason).where(
            Suppression.workspace_id == row.workspace_id, func.lower(Suppression.email) == to.lower()
        )
    )
    if suppressed is not None:
        raise RecipientSuppressed(f"{to} is suppressed ({suppressed})")
    now = utcnow()
    used = await session.scalar(
        select(AccountDailyUsage.sends).where(
            AccountDailyUsage.account_id == account.id, AccountDailyUsage.day == utc_day(now)
        )
    )
    limit = effective_limit(account)
    if (used or 0) >= limit:
        raise BudgetExhausted(f"{account.email} sent {used} of its {limit} today (UTC)")
    if account.auth_method == "oauth2" and settings is not None:
        try:
            password = await login_secret(
                session, vault, settings, account, "smtp_password", actor=actor, purpose="send"
            )
        except LoginUnavailable as exc:
            raise NotReplyable(str(exc)) from None
    else:
        password = await vault.reveal_for_account(session, account.id, "smtp_password", actor=actor, purpose="send")
    domain = account.email.rpartition("@")[2]
    message_id = new_message_id(domain)
    try:
        message = build_reply(account, row, to, payload, message_id, now)
    except HeaderInjection as exc:
        raise NotReplyable(str(exc)) from None
    server = SmtpServer(
        host=account.smtp_host,
        port=account.smtp_port,
        mode=account.smtp_mode,  # type: ignore[arg-type]
        username=account.smtp_username,
        password=password,
        allow_plaintext_auth=account.smtp_allow_plaintext_auth,
        auth_mechanism=auth_kind(account),
    )
    try:
        result = await send_test_message(server, net, sender=account.email, recipient=to, message=message.as_bytes())
    except SmtpError as exc:
        raise ReplyRefused(f"{exc.code}: {exc.detail}", extra={"smtp_code": exc.code}) from None
    finally:
        del password
    await session.execute(_COUNT, {"account_id": account.id, "day": utc_day(now)})
    reply = OutboundReply(
        workspace_id=row.workspace_id,
        account_id=account.id,
        inbound_message_id=row.id,
        to_email=to,
        subject=str(message["Subject"]),
        message_id_header=message_id,
        in_reply_to=f"<{row.message_id_header}>" if row.message_id_header else None,
        references=str(message["References"]) if message["References"] else None,
        text_body=payload.text,
        html_body=payload.html,
        reply_code=result.reply.code,
        reply_text=(result.reply.text or "")[:1000] or None,
        actor=actor.value,
        sent_at=now,
    )
    session.add(reply)
    if row.read_at is None:
        row.read_at = now
    await session.flush()
    return reply
