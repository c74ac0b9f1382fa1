"""ORM models, one module per table. Relationships are ``lazy="raise"``: every load is explicit."""

from nimbus_api.models.account_event import AccountEvent
from nimbus_api.models.account_health_daily import AccountHealthDaily
from nimbus_api.models.account_import import AccountImport, AccountImportRow
from nimbus_api.models.alert_rule import AlertRule
from nimbus_api.models.alert_state import AlertState
from nimbus_api.models.api_key import ApiKey
from nimbus_api.models.audit import CredentialAccess
from nimbus_api.models.campaign import Campaign, CampaignAccount, CampaignStep
from nimbus_api.models.contact import Contact, Suppression
from nimbus_api.models.credential import Credential
from nimbus_api.models.data_key import DataKey
from nimbus_api.models.domain import Domain
from nimbus_api.models.domain_check import DomainCheck
from nimbus_api.models.domain_sample import DomainSample
from nimbus_api.models.email_account import EmailAccount
from nimbus_api.models.enrollment import Enrollment
from nimbus_api.models.event import Event
from nimbus_api.models.idempotency import IdempotencyRecord
from nimbus_api.models.inbound_message import InboundMessage
from nimbus_api.models.mailbox_sync import MailboxFolder, MailboxSync, SyncWorker
from nimbus_api.models.message import AccountDailyUsage, Message, SendAttempt
from nimbus_api.models.message_report import MessageReport
from nimbus_api.models.monitoring_hour import MonitoringHour
from nimbus_api.models.monitoring_rollup import MonitoringRollup
from nimbus_api.models.oauth_state import OAuthAttempt, OAuthGrant
from nimbus_api.models.outbound_reply import OutboundReply
from nimbus_api.models.provider_hook import ProviderHook, ProviderHookEvent
from nimbus_api.models.warmup_message import WarmupMessage
from nimbus_api.models.webhook_delivery import WebhookAttempt, WebhookDelivery
from nimbus_api.models.webhook_endpoint import WebhookEndpoint, WebhookSecret
from nimbus_api.models.workspace import Workspace

__all__ = [
    "AccountDailyUsage",
    "AccountEvent",
    "AccountHealthDaily",
    "AccountImport",
    "AccountImportRow",
    "AlertRule",
    "AlertState",
    "ApiKey",
    "Campaign",
    "CampaignAccount",
    "CampaignStep",
    "Contact",
    "Credential",
    "CredentialAccess",
    "DataKey",
    "Domain",
    "DomainCheck",
    "DomainSample",
    "EmailAccount",
    "Enrollment",
    "Event",
    "IdempotencyRecord",
    "InboundMessage",
    "MailboxFolder",
    "MailboxSync",
    "Message",
    "MessageReport",
    "MonitoringHour",
    "MonitoringRollup",
    "OAuthAttempt",
    "OAuthGrant",
    "OutboundReply",
    "ProviderHook",
    "ProviderHookEvent",
    "SendAttempt",
    "Suppression",
    "SyncWorker",
    "WarmupMessage",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookSecret",
    "Workspace",
]
