from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Response

from nimbus_api.accounts import service
from nimbus_api.accounts.schemas import (
    AccountEventPage,
    CampaignType,
    EmailAccountCreate,
    EmailAccountPage,
    EmailAccountRead,
    EmailAccountUpdate,
)
from nimbus_api.api.deps import AuthContext, Session, SettingsDep, VaultDep, VerifierDep
from nimbus_api.api.idempotency import IdempotencyDep
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses
from nimbus_api.kit.schemas import ANY_LINE_PATTERN
from nimbus_api.oauth import revocation
from nimbus_api.providers.presets import ProviderId
from nimbus_api.validation.codes import ALL_CODES
from nimbus_api.validation.schemas import VerificationResult

router = APIRouter(prefix="/v1/email-accounts", tags=["email-accounts"], responses=problem_responses(401))

_NOT_FOUND = problem_responses(404, 422, codes={404: ["email_account.not_found"], 422: ["validation_error"]})
_IDEMPOTENCY_CODES = ["idempotency_key.mismatch", "idempotency_key.invalid"]
_VERIFY_429 = {429: ["verification.rate_limited"]}


@router.post(
    "",
    name="email_accounts_create",
    summary="Connect an email account",
    status_code=201,
    response_model=EmailAccountRead,
    responses=problem_responses(
        409,
        422,
        429,
        codes={
            409: ["email_account.exists", "email_account.limit_reached"],
            422: ["validation_error", *_IDEMPOTENCY_CODES, *ALL_CODES],
            **_VERIFY_429,
        },
    ),
)
async def email_accounts_create(
    payload: EmailAccountCreate,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    verifier: VerifierDep,
    idem: IdempotencyDep,
    settings: SettingsDep,
) -> Response:
    """Connect a mailbox: DNS, SMTP login and test send, IMAP login, and reading the test message back
    are checked first; any failed check answers 422 with every check (`checks`) and saves nothing.
    Passwords are encrypted at once and never returned (`password_set: true`).

    A workspace holds at most 1,000 email accounts unless the operator set another limit (for the
    deployment or for this workspace): beyond it, 409 `email_account.limit_reached`, answered before any
    check is run."""

    async def operation() -> EmailAccountRead:
        account, _ = await service.create(
            session, vault, verifier, auth.workspace_id, payload, max_accounts=settings.max_accounts_per_workspace
        )
        return (await service.to_read(session, vault, [account]))[0]

    response: Response = await idem.run(201, operation)
    return response


@router.get("", name="email_accounts_list", summary="List email accounts", responses=problem_responses(422))
async def email_accounts_list(
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    is_active: bool | None = None,
    provider: ProviderId | None = None,
    domain: Annotated[str | None, Query(max_length=253, pattern=ANY_LINE_PATTERN)] = None,
    campaign_type: CampaignType | None = None,
    disabled: bool | None = None,
    q: Annotated[
        str | None, Query(max_length=200, pattern=ANY_LINE_PATTERN, description="Search in email and label.")
    ] = None,
) -> EmailAccountPage:
    filters = service.AccountFilters(
        is_active=is_active,
        provider=provider,
        domain=domain,
        campaign_type=campaign_type,
        disabled=disabled,
        q=q,
    )
    accounts, next_cursor = await service.list_page(session, auth.workspace_id, filters, cursor, limit)
    return EmailAccountPage(data=await service.to_read(session, vault, accounts), next_cursor=next_cursor)


@router.get("/{account_id}", name="email_accounts_get", summary="Get an email account", responses=_NOT_FOUND)
async def email_accounts_get(
    account_id: uuid.UUID, auth: AuthContext, session: Session, vault: VaultDep
) -> EmailAccountRead:
    account = await service.get(session, auth.workspace_id, account_id)
    return (await service.to_read(session, vault, [account]))[0]


@router.patch(
    "/{account_id}",
    name="email_accounts_update",
    summary="Update an email account (pause/resume with `is_active`)",
    responses=problem_responses(
        404,
        422,
        429,
        codes={404: ["email_account.not_found"], 422: ["validation_error", *ALL_CODES], **_VERIFY_429},
    ),
)
async def email_accounts_update(
    account_id: uuid.UUID,
    payload: EmailAccountUpdate,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    verifier: VerifierDep,
    settings: SettingsDep,
) -> EmailAccountRead:
    """Changes to hosts, modes, users, passwords, folder or DKIM selector are verified with the new
    values before they replace the old ones; a failed check answers 422 and changes nothing.

    `current_stage` pins the warmup stage (`stage_override`): the platform leaves it until
    `stage_override: null` clears it, and the stage is then computed again from the stage table at once
    (README: Warmup stages). `daily_send_limit` is the ceiling; `effective_daily_send_limit` is what the
    stage allows under it."""
    account = await service.update(
        session,
        vault,
        verifier,
        auth.workspace_id,
        account_id,
        payload,
        actor=auth.actor,
        stage_rules=settings,
        settings=settings,
    )
    return (await service.to_read(session, vault, [account]))[0]


@router.post(
    "/{account_id}/verify",
    name="email_accounts_verify",
    summary="Verify a saved email account again",
    response_model=VerificationResult,
    responses=problem_responses(
        404,
        409,
        422,
        429,
        codes={
            404: ["email_account.not_found"],
            409: ["verification.locked"],
            422: ["validation_error", *_IDEMPOTENCY_CODES],
            **_VERIFY_429,
        },
    ),
)
async def email_accounts_verify(
    account_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    verifier: VerifierDep,
    idem: IdempotencyDep,
    settings: SettingsDep,
) -> Response:
    """Run every check on the stored settings (secrets decrypted for it, audited as `verify`). The result,
    passed or failed, is stored as the account's `last_verification` and returned with 200. An OAuth
    account logs in with its access token, refreshed first when it expired (or when a login refuses it)."""

    async def operation() -> VerificationResult:
        _, result = await service.verify(
            session, vault, verifier, auth.workspace_id, account_id, actor=auth.actor, settings=settings
        )
        return result

    response: Response = await idem.run(200, operation)
    return response


@router.get(
    "/{account_id}/events",
    name="email_accounts_list_events",
    summary="List an email account's events (stage changes, pauses)",
    responses=_NOT_FOUND,
)
async def email_accounts_list_events(
    account_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> AccountEventPage:
    """What people and the platform did to the account, newest first: `stage_changed` when a PATCH sets
    `current_stage` (with the API key that did it) or when the stage table moves the stage (actor
    `platform`, `detail` with the values that decided it); `stage_override_cleared`; `cooldown` (actor
    `platform`, `detail` has `reason` (`bounce_burst` or `complaint`), `from`, `until`); `paused` when
    the sender paused the inbox (actor `system:sender`; `detail` has `reason`, `stage`, `detail`,
    `server_reply` `{code, enhanced, text}`, the `message_id` and `recipient` of the send that met the
    failure, `handed_back` (sends given to other inboxes) and `failed` (sends that had already paused
    another inbox))."""
    data, next_cursor = await service.list_events(session, auth.workspace_id, account_id, cursor, limit)
    return AccountEventPage(data=data, next_cursor=next_cursor)


@router.delete(
    "/{account_id}",
    name="email_accounts_delete",
    summary="Delete an email account and its stored secrets",
    description="Its messages not yet sent go back to their campaigns' pools: each is placed on another "
    "inbox at once, a threaded follow-up still answering its step 1. Messages already sent keep their record.",
    status_code=204,
    responses=_NOT_FOUND,
)
async def email_accounts_delete(
    account_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    """An OAuth account's grant is given back to the provider (its refresh token revoked, where the
    provider has a revocation endpoint) after the delete is committed; the delete never waits for it."""
    pending = await revocation.prepare(session, vault, settings, auth.workspace_id, account_id, actor=auth.actor)
    await service.delete_account(session, auth.workspace_id, account_id)
    if pending is not None:
        background.add_task(revocation.revoke, pending)  # runs once the committed response is sent
    return Response(status_code=204)
