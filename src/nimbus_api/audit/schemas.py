from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.credentials import vault

DecryptPurpose = TypeAliasType("DecryptPurpose", vault.Purpose)
CredentialKind = TypeAliasType("CredentialKind", vault.AuditedKind)


class AuditEntry(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID | None = Field(description="The mailbox whose secret was decrypted, if it was one.")
    webhook_endpoint_id: uuid.UUID | None = Field(
        description="The webhook endpoint whose signing secret was decrypted, if it was one."
    )
    credential: CredentialKind
    actor: str = Field(description="`api_key:<id>` or `system:<task>`.")
    purpose: DecryptPurpose = Field(description="Why it was decrypted.")
    created_at: datetime


class AuditPage(BaseModel):
    data: list[AuditEntry]
    next_cursor: str | None
