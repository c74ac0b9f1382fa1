from __future__ import annotations

from nimbus_api.kit.problems import Conflict, NotFound


class AccountNotFound(NotFound):
    code = "email_account.not_found"
    title = "No such email account in this workspace"


class EmailAccountLimitReached(Conflict):
    code = "email_account.limit_reached"
    title = "The workspace holds as many email accounts as it may"


class EmailAccountExists(Conflict):
    code = "email_account.exists"
    title = "This address is already connected in this workspace"
