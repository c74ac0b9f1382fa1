"""The event catalogue: every event type and the schema of its ``data``.

A webhook body (and the ``payload`` of an event row) is ``{"type", "timestamp", "data"}``: ``timestamp``
is when the change was committed to happen (ISO 8601, UTC), ``data`` holds the ids and the few fields a
receiver needs to act without calling back. Never a secret. Every text field is bounded, so a payload
stays far below ``MAX_PAYLOAD_BYTES`` by construction (a test fills every field to its limit).

Types are *emitted* (something in the code produces them today) or *reserved* (documented so SDKs and
receivers can prepare; the inbound sync, health and alerting work emits them). Adding a field to a type's
``data`` is a compatible change; removing or renaming one is not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

from nimbus_api.suppressions.schemas import SuppressionReason  # a leaf module of types: no import cycle

MAX_PAYLOAD_BYTES = 20 * 1024
"""The bound on a serialized payload (UTF-8 JSON); ``events.emit`` refuses a larger one."""

Email = Annotated[str, Field(max_length=254, description="The address as stored (case kept).")]
Code = Annotated[str, Field(max_length=100)]
Text = Annotated[str, Field(max_length=500)]
Name = Annotated[str, Field(max_length=200)]


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- emitted ------------------------------------------------------------------------------------------


DisabledBy = TypeAliasType("DisabledBy", Literal["sender", "person", "bounce_guard", "oauth"])


class AccountDisabledData(EventData):
    """The inbox left the rotation: the sender paused it on a failure that cannot be the recipient's
    (login, TLS, sender address, relay refused), or a person set `is_active` to false; or (`by`:
    `bounce_guard`, with `campaign_id`) its bounce rate in one campaign went over the campaign's threshold,
    and it left that campaign's rotation only."""

    account_id: uuid.UUID
    email: Email
    reason: Code = Field(
        description="The failure's code (`smtp.auth_failed`, ...), `manual` (a person), `bounce_rate`, or "
        "`reauthorization_required` (`by`: `oauth`: the provider refused to refresh an OAuth account's token; "
        "a person must re-authorize it with `POST /v1/email-accounts/{id}/reauthorize`)."
    )
    by: DisabledBy
    campaign_id: uuid.UUID | None = Field(default=None, description="`bounce_guard`: the campaign concerned.")
    bounce_rate: float | None = Field(default=None, ge=0, le=100, description="`bounce_guard`: percent.")
    bounces: int | None = Field(default=None, ge=0)
    sends: int | None = Field(default=None, ge=0)
    threshold: float | None = Field(default=None, ge=0, le=100, description="The campaign's threshold, percent.")


class AccountEnabledData(EventData):
    """A person set the inbox's `is_active` back to true."""

    account_id: uuid.UUID
    email: Email


class CampaignStartedData(EventData):
    campaign_id: uuid.UUID
    name: Name
    resumed: bool = Field(description="True when a paused campaign was started again.")


CampaignPauseReason = TypeAliasType("CampaignPauseReason", Literal["manual", "all_accounts_disabled"])


class CampaignPausedData(EventData):
    campaign_id: uuid.UUID
    name: Name
    reason: CampaignPauseReason = Field(
        description="`manual`: paused through the API; `all_accounts_disabled`: every inbox of its pool was "
        "taken out of it by the bounce guard."
    )


class CampaignCompletedData(EventData):
    campaign_id: uuid.UUID
    name: Name


class EnrollmentRef(EventData):
    enrollment_id: uuid.UUID
    campaign_id: uuid.UUID
    contact_id: uuid.UUID
    email: Email


class EnrollmentCompletedData(EnrollmentRef):
    """The contact got the campaign's last step."""


EnrollmentBounceReason = TypeAliasType("EnrollmentBounceReason", Literal["mx_check", "hard_bounce"])


class EnrollmentBouncedData(EnrollmentRef):
    """`mx_check`: the domain accepts no mail (checked before the first send); `hard_bounce`: the
    recipient's server refused the address permanently (5.1.x at RCPT)."""

    reason: EnrollmentBounceReason
    message_id: uuid.UUID | None = Field(description="The message refused (null for `mx_check`).")
    smtp_code: int | None = Field(ge=100, le=599)
    enhanced_code: Annotated[str, Field(max_length=20)] | None
    server_text: Text | None = Field(description="The server's reply, cut to 500 characters.")


class EnrollmentUnsubscribedData(EnrollmentRef):
    """The contact used the unsubscribe link of one of the enrollment's messages (RFC 8058 one-click
    or the page)."""


class ContactSuppressedData(EventData):
    """An address went on the workspace's suppression list; nothing is sent to it any more."""

    suppression_id: uuid.UUID
    email: Email
    reason: SuppressionReason


class DomainHealthData(EventData):
    """`domain.unhealthy`: a check (nightly or `POST /v1/domains/{id}/check`) found a domain-wide problem and
    paused every inbox of the domain; `domain.healthy`: a re-check found none left and resumed them."""

    domain_id: uuid.UUID
    domain: Annotated[str, Field(max_length=253)]
    failing_checks: list[Annotated[str, Field(max_length=50)]] = Field(
        max_length=10, description="Codes of the checks that fail (`dns.spf_invalid`, ...; empty: none)."
    )
    paused: bool = Field(default=False, description="Whether every inbox of the domain is now out of rotation.")
    accounts: int = Field(default=0, ge=0, description="Email accounts on the domain (all paused or resumed).")
    detail: Text | None = Field(default=None, description="What the first failing check found.")


AlertSeverity = TypeAliasType("AlertSeverity", Literal["info", "warning", "critical"])
AlertRuleKind = TypeAliasType(
    "AlertRuleKind",
    Literal["score_below", "bounce_rate_above", "complaint_rate_above", "sync_lag_above", "listed", "domain_unhealthy"],
)
AlertSubject = TypeAliasType("AlertSubject", Literal["account", "domain"])
AlertResolution = TypeAliasType("AlertResolution", Literal["condition_ended", "rule_disabled", "rule_deleted"])


class AlertTriggeredData(EventData):
    """An alert rule's condition started to hold for one inbox or domain (README, "Alerts and
    monitoring"). Sent once per alert; `alert.resolved` with the same `alert_id` ends it."""

    alert: Code = Field(description="What the alert is about: `<subject_type>.<kind>`, e.g. `account.score_below`.")
    severity: AlertSeverity
    message: Text
    subject_id: uuid.UUID | None = Field(description="The campaign, account or domain concerned.")
    alert_id: uuid.UUID | None = Field(default=None, description="The alert (`GET /v1/alerts`).")
    rule_id: uuid.UUID | None = Field(default=None, description="The rule that raised it.")
    kind: AlertRuleKind | None = None
    subject_type: AlertSubject | None = None
    subject_name: Email | None = Field(default=None, description="The inbox's address or the domain's name.")
    value: float | None = Field(default=None, description="The measured value (null for the yes/no kinds).")
    threshold: float | None = Field(default=None, description="The rule's threshold (null for the yes/no kinds).")


class AlertResolvedData(EventData):
    """An alert ended: its condition no longer holds (or its subject is gone), or its rule was disabled
    or deleted. Sent once per alert, after its `alert.triggered`."""

    alert_id: uuid.UUID
    alert: Code = Field(description="As in `alert.triggered`.")
    severity: AlertSeverity
    message: Text
    rule_id: uuid.UUID | None = Field(description="Null when the rule was deleted.")
    kind: AlertRuleKind
    subject_type: AlertSubject
    subject_id: uuid.UUID
    subject_name: Email
    value: float | None = Field(description="The latest measured value (null for the yes/no kinds).")
    threshold: float | None
    reason: AlertResolution
    duration_seconds: int = Field(ge=0, description="How long the alert was active.")


# --- reserved -----------------------------------------------------------------------------------------


class EnrollmentRepliedData(EnrollmentRef):
    account_id: uuid.UUID
    inbound_message_id: uuid.UUID
    subject: Text | None
    snippet: Text | None = Field(description="The first characters of the reply's text.")


class EnrollmentAutoRepliedData(EnrollmentRepliedData):
    """An out-of-office or other automatic answer (RFC 3834 and the big providers' formats)."""


BounceKind = TypeAliasType("BounceKind", Literal["hard", "soft"])


class MessageBouncedData(EventData):
    """A bounce report (a DSN in the inbox, or the sending service's webhook: a provider hook) that arrived
    after the message was accepted and fails its recipient permanently. `hard`: the address itself is bad
    (unknown user or domain, moved, no mail accepted) and was suppressed; `soft`: refused for this message
    (policy, spam filtering, reputation...), the address stays. A delayed report is no bounce and emits
    nothing."""

    message_id: uuid.UUID
    enrollment_id: uuid.UUID | None
    campaign_id: uuid.UUID | None
    account_id: uuid.UUID
    email: Email
    kind: BounceKind
    enhanced_code: Annotated[str, Field(max_length=20)] | None
    diagnostic: Text | None
    reason: Code | None = Field(default=None, description="`userunknown`, `mailboxfull`, `blocked`... (README).")
    inbound_message_id: uuid.UUID | None = Field(
        default=None, description="The report, in the inbox (null when a provider hook reported it)."
    )


class MessageComplainedData(EventData):
    """The recipient marked the message as spam (a feedback-loop report, or a provider hook's)."""

    message_id: uuid.UUID
    enrollment_id: uuid.UUID | None
    campaign_id: uuid.UUID | None
    account_id: uuid.UUID
    email: Email
    feedback_type: Code | None = Field(default=None, description="The report's Feedback-Type (`abuse`...).")
    inbound_message_id: uuid.UUID | None = Field(
        default=None, description="The report, in the inbox (null when a provider hook reported it)."
    )


class AccountSyncFailedData(EventData):
    account_id: uuid.UUID
    email: Email
    error_code: Code
    detail: Text | None


HealthBand = TypeAliasType("HealthBand", Literal["healthy", "watch", "at_risk", "blocked"])


class AccountHealthChangedData(EventData):
    """The inbox's health band changed at a recompute (once per change; README "Health scores").
    `score` is the overall score, `reputation_score` the part that reflects what receivers think."""

    account_id: uuid.UUID
    email: Email
    previous_score: float = Field(ge=0, le=100)
    score: float = Field(ge=0, le=100)
    previous_band: HealthBand | None = None
    band: HealthBand | None = None
    previous_reputation_score: float | None = Field(default=None, ge=0, le=100)
    reputation_score: float | None = Field(default=None, ge=0, le=100)


class WebhookTestData(EventData):
    """Sent by `POST /v1/webhook-endpoints/{id}/test`."""

    endpoint_id: uuid.UUID


EventType = TypeAliasType(
    "EventType",
    Literal[
        "account.disabled",
        "account.enabled",
        "account.sync_failed",
        "account.health_changed",
        "campaign.started",
        "campaign.paused",
        "campaign.completed",
        "enrollment.completed",
        "enrollment.bounced",
        "enrollment.unsubscribed",
        "enrollment.replied",
        "enrollment.auto_replied",
        "contact.suppressed",
        "message.bounced",
        "message.complained",
        "domain.unhealthy",
        "domain.healthy",
        "alert.triggered",
        "alert.resolved",
        "webhook.test",
    ],
)


@dataclass(frozen=True)
class Spec:
    data: type[EventData]
    summary: str
    emitted: bool


CATALOGUE: dict[str, Spec] = {
    "account.disabled": Spec(AccountDisabledData, "An inbox was paused (by the sender or a person)", True),
    "account.enabled": Spec(AccountEnabledData, "A person resumed an inbox", True),
    "account.sync_failed": Spec(AccountSyncFailedData, "Reading an inbox over IMAP failed", True),
    "account.health_changed": Spec(AccountHealthChangedData, "An inbox's health band changed", True),
    "campaign.started": Spec(CampaignStartedData, "A campaign started (or resumed)", True),
    "campaign.paused": Spec(CampaignPausedData, "A campaign was paused", True),
    "campaign.completed": Spec(CampaignCompletedData, "Every enrollment of a campaign finished", True),
    "enrollment.completed": Spec(EnrollmentCompletedData, "A contact got a campaign's last step", True),
    "enrollment.bounced": Spec(EnrollmentBouncedData, "A contact's address bounced", True),
    "enrollment.unsubscribed": Spec(EnrollmentUnsubscribedData, "A contact unsubscribed", True),
    "enrollment.replied": Spec(EnrollmentRepliedData, "A contact replied", True),
    "enrollment.auto_replied": Spec(EnrollmentAutoRepliedData, "A contact's mailbox answered automatically", True),
    "contact.suppressed": Spec(ContactSuppressedData, "An address was suppressed", True),
    "message.bounced": Spec(MessageBouncedData, "A bounce report arrived for a sent message", True),
    "message.complained": Spec(MessageComplainedData, "A recipient reported a message as spam", True),
    "domain.unhealthy": Spec(
        DomainHealthData, "A domain-wide problem (DNS, DMARC alignment, blocklist) paused a sending domain", True
    ),
    "domain.healthy": Spec(DomainHealthData, "A re-check cleared a sending domain's problems: it sends again", True),
    "alert.triggered": Spec(AlertTriggeredData, "An alert rule's condition started for an inbox or domain", True),
    "alert.resolved": Spec(AlertResolvedData, "An alert ended", True),
    "webhook.test": Spec(WebhookTestData, "A test delivery asked for through the API", True),
}
