"""The OAuth routes' problems (stable codes). A failure after the callback consumed its state is no
problem response: it is recorded on the attempt and the browser is sent back with its code."""

from __future__ import annotations

from nimbus_api.kit.problems import Conflict, FieldError, NotFound, Problem, ValidationProblem


class ProviderNotConfigured(Conflict):
    code = "oauth.provider_not_configured"
    title = "The operator has not configured this OAuth provider"


class StateInvalid(Problem):
    status = 400
    code = "oauth.state_invalid"
    title = "Unknown, expired or already used OAuth state"


class FrontendNotAllowed(ValidationProblem):
    code = "oauth.frontend_not_allowed"
    title = "The frontend URL's origin is not in NIMBUS_OAUTH_FRONTEND_ORIGINS"

    def __init__(self, detail: str) -> None:
        super().__init__([FieldError(field="frontend_url", message=detail, type="value_error")], detail)


class AttemptNotFound(NotFound):
    code = "oauth_attempt.not_found"
    title = "No such OAuth attempt in this workspace"


class ProviderRequired(ValidationProblem):
    code = "oauth.provider_required"
    title = "A password account is switched to OAuth with a provider: give `provider`"

    def __init__(self, detail: str) -> None:
        super().__init__([FieldError(field="provider", message=detail, type="missing")], detail)


# Codes an attempt may fail with (besides the verification's own check codes).
ACCESS_DENIED = "oauth.access_denied"
EXCHANGE_FAILED = "oauth.exchange_failed"
SCOPE_MISSING = "oauth.scope_missing"
IDENTITY_MISSING = "oauth.identity_missing"
ACCOUNT_MISMATCH = "oauth.account_mismatch"
ACCOUNT_EXISTS = "email_account.exists"
LIMIT_REACHED = "email_account.limit_reached"
ACCOUNT_GONE = "email_account.not_found"
ATTEMPT_CODES = (
    ACCESS_DENIED,
    EXCHANGE_FAILED,
    SCOPE_MISSING,
    IDENTITY_MISSING,
    ACCOUNT_MISMATCH,
    ACCOUNT_EXISTS,
    LIMIT_REACHED,
    ACCOUNT_GONE,
)
