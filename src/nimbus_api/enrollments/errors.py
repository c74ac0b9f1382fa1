from __future__ import annotations

from nimbus_api.kit.problems import NotFound


class EnrollmentNotFound(NotFound):
    code = "enrollment.not_found"
    title = "No such enrollment in this campaign"


class UnsubscribeTokenNotFound(NotFound):
    code = "unsubscribe.not_found"
    title = "This unsubscribe link is not known"
