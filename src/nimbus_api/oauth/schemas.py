"""The OAuth routes' bodies. An attempt's read shows its outcome, never a token or the state."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import StrictModel, as_sent
from nimbus_api.kit.validators import EmailAddress
from nimbus_api.oauth.providers import OAuthProviderId
from nimbus_api.validation.schemas import VerificationResult

# No white space, control character or fragment after the scheme, spelled out (not ``\s``, which ECMA-262
# and Python ``re`` read differently: Python's also takes U+001C..U+001F), so every engine agrees.
FRONTEND_URL_PATTERN = (
    r"^[hH][tT][tT][pP][sS]?://"
    r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000#]+$"
)
FrontendUrl = Annotated[
    str,
    Field(
        min_length=10,
        max_length=2000,
        pattern=FRONTEND_URL_PATTERN,
        description="Where the browser is sent back (303) after the provider's consent screen, with "
        "`oauth_attempt`, and `account_id` or `error` added to its query. Its origin must be one of "
        "`NIMBUS_OAUTH_FRONTEND_ORIGINS`.",
        examples=["https://app.example.com/settings/inboxes"],
    ),
    as_sent(2000, FRONTEND_URL_PATTERN),
]
AttemptStatus = TypeAliasType("AttemptStatus", Literal["pending", "succeeded", "failed"])


class OAuthAuthorizeIn(StrictModel):
    frontend_url: FrontendUrl
    login_hint: EmailAddress | None = Field(
        default=None, description="The address to connect: the provider preselects that account."
    )


class OAuthReauthorizeIn(StrictModel):
    frontend_url: FrontendUrl
    provider: OAuthProviderId | None = Field(
        default=None,
        description="Required for a password account (switching it to OAuth); an OAuth account keeps its own.",
    )


class OAuthAuthorizeOut(BaseModel):
    attempt_id: uuid.UUID = Field(description="Read the outcome at `GET /v1/oauth/attempts/{attempt_id}`.")
    provider: OAuthProviderId
    authorize_url: str = Field(description="Send the browser here (the provider's consent screen).")
    expires_at: datetime = Field(description="The URL's state is refused after this.")


class OAuthAttemptRead(BaseModel):
    id: uuid.UUID
    provider: OAuthProviderId
    status: AttemptStatus
    reauthorize: bool = Field(description="A re-authorization of `account_id` (else a new connection).")
    account_id: uuid.UUID | None = Field(description="The account connected or re-authorized.")
    email: str | None = Field(description="The address the provider named.")
    error_code: str | None = Field(
        description="Why it failed: `oauth.access_denied`, `oauth.scope_missing`, `oauth.exchange_failed`, "
        "`oauth.identity_missing`, `oauth.account_mismatch`, `email_account.exists`, "
        "`email_account.limit_reached`, or the failed check's code (`smtp.auth_failed`, ...)."
    )
    error_detail: str | None
    verification: VerificationResult | None = Field(description="The connection checks, when they ran.")
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
