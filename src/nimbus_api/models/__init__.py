"""ORM models, one module per table. Relationships are ``lazy="raise"``: every load is explicit."""

from nimbus_api.models.api_key import ApiKey
from nimbus_api.models.audit import CredentialAccess
from nimbus_api.models.credential import Credential
from nimbus_api.models.data_key import DataKey
from nimbus_api.models.domain import Domain
from nimbus_api.models.email_account import EmailAccount
from nimbus_api.models.idempotency import IdempotencyRecord
from nimbus_api.models.workspace import Workspace

__all__ = [
    "ApiKey",
    "Credential",
    "CredentialAccess",
    "DataKey",
    "Domain",
    "EmailAccount",
    "IdempotencyRecord",
    "Workspace",
]
