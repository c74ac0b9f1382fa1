from __future__ import annotations

from nimbus_api.kit.problems import NotFound


class AccountImportNotFound(NotFound):
    code = "account_import.not_found"
    title = "No such account import in this workspace"
