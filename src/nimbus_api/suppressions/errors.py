from __future__ import annotations

from nimbus_api.kit.problems import Conflict, NotFound


class SuppressionNotFound(NotFound):
    code = "suppression.not_found"
    title = "No such suppression in this workspace"


class SuppressionExists(Conflict):
    code = "suppression.exists"
    title = "This address is already on the suppression list"
