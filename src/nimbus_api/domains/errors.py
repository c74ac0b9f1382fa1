from __future__ import annotations

from nimbus_api.kit.problems import NotFound


class DomainNotFound(NotFound):
    code = "domain.not_found"
    title = "No such domain in this workspace"
