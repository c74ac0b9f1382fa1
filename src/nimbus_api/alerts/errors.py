from __future__ import annotations

from nimbus_api.kit.problems import NotFound, Problem


class AlertRuleNotFound(NotFound):
    code = "alert_rule.not_found"
    title = "No such alert rule in this workspace"


class InvalidThreshold(Problem):
    """The threshold does not fit the rule's kind (``alerts.kinds``: unit and bounds per kind)."""

    status = 422
    code = "alert_rule.invalid_threshold"
    title = "The threshold is not valid for this kind of rule"
