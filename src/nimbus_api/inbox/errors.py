from __future__ import annotations

from nimbus_api.kit.problems import Conflict, NotFound, Problem


class InboxMessageNotFound(NotFound):
    code = "inbox.not_found"
    title = "No such inbound message in this workspace"


class NotReplyable(Conflict):
    code = "inbox.not_replyable"
    title = "This message is a report from a mail system (bounce, complaint, delivery report): nobody reads answers"


class RecipientSuppressed(Conflict):
    code = "inbox.recipient_suppressed"
    title = "The address is on the suppression list"


class AccountUnavailable(Conflict):
    code = "inbox.account_unavailable"
    title = "The inbox this message came to was disabled by the platform (its login or relay failed)"


class BudgetExhausted(Conflict):
    code = "inbox.budget_exhausted"
    title = "The inbox has used today's send budget (daily_send_limit); the reply would exceed it"


class ReplyRefused(Problem):
    status = 502
    code = "inbox.reply_failed"
    title = "The inbox's SMTP server did not accept the reply"
