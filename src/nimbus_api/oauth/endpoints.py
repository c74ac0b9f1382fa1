from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import RedirectResponse

from nimbus_api.accounts import service as accounts
from nimbus_api.api.deps import AuthContext, Session, SettingsDep, VaultDep, VerifierDep
from nimbus_api.kit.problems import problem_responses
from nimbus_api.kit.schemas import ANY_LINE_PATTERN
from nimbus_api.oauth import service
from nimbus_api.oauth.errors import ProviderRequired
from nimbus_api.oauth.schemas import OAuthAttemptRead, OAuthAuthorizeIn, OAuthAuthorizeOut, OAuthReauthorizeIn

router = APIRouter(prefix="/v1/oauth", tags=["oauth"])
account_router = APIRouter(prefix="/v1/email-accounts", tags=["email-accounts"])

_AUTHORIZE_ERRORS = {
    409: ["oauth.provider_not_configured"],
    422: ["validation_error", "oauth.frontend_not_allowed"],
}
# A path parameter, so a pattern rather than an enum (FastAPI would inline the enum in the document).
ProviderPath = Annotated[
    str,
    Path(max_length=20, pattern="^(google|microsoft)$", description="`google` or `microsoft`."),
]
_QueryText = Annotated[str | None, Query(max_length=2000, pattern=ANY_LINE_PATTERN)]


@router.post(
    "/{provider}/authorize",
    name="oauth_authorize",
    summary="Start connecting a Google or Microsoft mailbox with OAuth",
    status_code=201,
    responses=problem_responses(401, 404, 409, 422, codes={404: ["not_found"], **_AUTHORIZE_ERRORS}),
)
async def oauth_authorize(
    provider: ProviderPath,
    payload: OAuthAuthorizeIn,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    settings: SettingsDep,
) -> OAuthAuthorizeOut:
    """Send the browser to `authorize_url` (the provider's consent screen; authorization code with PKCE).
    The provider sends it back to `GET /v1/oauth/{provider}/callback`, which connects the mailbox (the same
    checks as a password account, with XOAUTH2 logins) and then sends the browser to `frontend_url` with
    `oauth_attempt=<attempt_id>` and `account_id=<id>` or `error=<code>`. The URL works once, for 10
    minutes (`NIMBUS_OAUTH_STATE_TTL_SECONDS`)."""
    return await service.start(
        session,
        vault,
        settings,
        auth.workspace_id,
        provider,
        frontend_url=payload.frontend_url,
        login_hint=payload.login_hint,
    )


@router.get(
    "/{provider}/callback",
    name="oauth_callback",
    summary="The provider's redirect after consent (public: opened by the browser)",
    status_code=303,
    responses={
        303: {"description": "To the frontend URL given at authorize time, with the outcome in its query."},
        **problem_responses(
            400,
            404,
            409,
            422,
            codes={
                400: ["oauth.state_invalid", "request.malformed"],
                404: ["not_found"],
                409: ["oauth.provider_not_configured"],
                422: ["validation_error"],
            },
        ),
    },
    response_class=RedirectResponse,
)
async def oauth_callback(
    provider: ProviderPath,
    session: Session,
    vault: VaultDep,
    verifier: VerifierDep,
    settings: SettingsDep,
    state: _QueryText = None,
    code: _QueryText = None,
    error: Annotated[str | None, Query(max_length=100, pattern=ANY_LINE_PATTERN)] = None,
    error_description: _QueryText = None,
) -> RedirectResponse:
    """No API key: the `state` binds the callback to the workspace that asked for the URL. An unknown,
    expired or already used state answers 400 `oauth.state_invalid`; any later failure is recorded on
    the attempt and the browser is sent back with `error=<code>`."""
    location = await service.callback(
        session,
        vault,
        verifier,
        settings,
        provider,
        state=state,
        code=code,
        error=error,
        error_description=error_description,
    )
    return RedirectResponse(location, status_code=303)


@router.get(
    "/attempts/{attempt_id}",
    name="oauth_attempts_get",
    summary="Read an OAuth connect attempt's outcome",
    responses=problem_responses(401, 404, 422, codes={404: ["oauth_attempt.not_found"], 422: ["validation_error"]}),
)
async def oauth_attempts_get(attempt_id: uuid.UUID, auth: AuthContext, session: Session) -> OAuthAttemptRead:
    """`pending` until the callback; then `succeeded` with `account_id`, or `failed` with `error_code`,
    `error_detail` and, when the connection checks ran, every check (`verification`)."""
    return await service.get_attempt(session, auth.workspace_id, attempt_id)


@account_router.post(
    "/{account_id}/reauthorize",
    name="email_accounts_reauthorize",
    summary="Re-authorize an OAuth account (or switch a password account to OAuth)",
    status_code=201,
    responses=problem_responses(
        401,
        404,
        409,
        422,
        codes={
            404: ["email_account.not_found"],
            409: ["oauth.provider_not_configured"],
            422: ["validation_error", "oauth.frontend_not_allowed", "oauth.provider_required"],
        },
    ),
)
async def email_accounts_reauthorize(
    account_id: uuid.UUID,
    payload: OAuthReauthorizeIn,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    settings: SettingsDep,
) -> OAuthAuthorizeOut:
    """A new authorize URL whose callback replaces this account's tokens (the person must sign in as the
    account's address) and clears its disabled state, e.g. after `reauthorization_required`."""
    account = await accounts.get(session, auth.workspace_id, account_id)
    provider = payload.provider
    if account.auth_method == "oauth2":
        grant_provider = await service.grant_provider(session, account.id)
        provider = provider or grant_provider
    if provider is None:
        raise ProviderRequired("give `provider` (google or microsoft) to switch a password account to OAuth")
    return await service.start(
        session, vault, settings, auth.workspace_id, provider, frontend_url=payload.frontend_url, account=account
    )
