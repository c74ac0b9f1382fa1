from __future__ import annotations

from nimbus_api.kit.problems import Conflict, NotFound


class ContactNotFound(NotFound):
    code = "contact.not_found"
    title = "No such contact in this workspace"


class ContactExists(Conflict):
    code = "contact.exists"
    title = "A contact with this address exists in this workspace"
