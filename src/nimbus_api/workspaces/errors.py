from __future__ import annotations

from nimbus_api.kit.problems import Conflict, NotFound


class WorkspaceExists(Conflict):
    code = "workspace.exists"
    title = "A workspace with this name exists"


class WorkspaceNotFound(NotFound):
    code = "workspace.not_found"
    title = "No such workspace"


class ApiKeyNotFound(NotFound):
    code = "api_key.not_found"
    title = "No such API key"
