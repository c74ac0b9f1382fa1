"""Alert rule bodies and answers, and the alert list's items."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from nimbus_api.alerts.kinds import AlertKind, AlertSeverity, AlertSubjectType
from nimbus_api.events.catalogue import AlertResolution
from nimbus_api.kit.pagination import Page
from nimbus_api.kit.schemas import JsonUuid, PatchModel, StrictModel, not_null

Threshold = Annotated[
    float,
    Field(
        description="In the kind's unit: `score_below` points (0 < t <= 100), `bounce_rate_above` and "
        "`complaint_rate_above` percent (0 <= t < 100), `sync_lag_above` whole seconds (60..604800); "
        "`listed` and `domain_unhealthy` take none (null)."
    ),
]


class AlertRuleCreate(StrictModel):
    kind: AlertKind
    threshold: Threshold | None = Field(
        default=None, description="Left out or null: the kind's default (README); must be null for yes/no kinds."
    )
    severity: AlertSeverity | None = Field(default=None, description="Left out: the kind's default.")
    enabled: bool = True
    account_id: JsonUuid | None = Field(
        default=None, description="Watch this inbox only (its domain, for the domain kinds); null: every inbox."
    )


class AlertRuleUpdate(PatchModel):
    """Only the fields given change; the kind cannot."""

    threshold: Threshold | None = Field(default=None, description="Null only for the yes/no kinds.")
    severity: AlertSeverity | None = not_null()
    enabled: bool | None = not_null(description="False resolves the rule's active alerts (`alert.resolved`).")
    account_id: JsonUuid | None = Field(default=None, description="Null: every inbox of the workspace.")


class AlertRuleRead(BaseModel):
    id: uuid.UUID
    kind: AlertKind
    subject_type: AlertSubjectType = Field(description="What the rule watches: inboxes or their domains.")
    threshold: float | None
    unit: str | None = Field(description="`points`, `percent`, `seconds`, or null.")
    severity: AlertSeverity
    enabled: bool
    account_id: uuid.UUID | None
    active_alerts: int = Field(ge=0, description="Alerts of this rule active now.")
    created_at: datetime
    updated_at: datetime


class AlertRulePage(Page[AlertRuleRead]):
    pass


class AlertRead(BaseModel):
    id: uuid.UUID
    rule_id: uuid.UUID | None = Field(description="Null when the rule was deleted since.")
    kind: AlertKind
    severity: AlertSeverity
    subject_type: AlertSubjectType
    subject_id: uuid.UUID = Field(description="The inbox or domain.")
    subject_name: str
    threshold: float | None
    value: float | None = Field(description="The measured value when it triggered.")
    last_value: float | None = Field(description="At the latest evaluation while active.")
    active: bool
    since: datetime
    resolved_at: datetime | None
    resolved_reason: AlertResolution | None
    message: str


class AlertPage(Page[AlertRead]):
    pass
