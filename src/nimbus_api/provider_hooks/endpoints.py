"""`/v1/provider-hooks` (a workspace's hooks, API key) and `/hooks/{provider}/{token}` (the public URL the
sending service posts to). The create answer is the only one that shows the URL with its token. Create
takes no ``Idempotency-Key``: a replayed answer would have to store the token (a lost answer is fixed by
deleting the hook and creating another)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.datastructures import Headers

from nimbus_api.api.deps import AuthContext, Session, VaultDep, app_state
from nimbus_api.credentials.vault import Actor
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses
from nimbus_api.models import ProviderHook
from nimbus_api.provider_hooks import apply, errors, reports, service, signatures, sns
from nimbus_api.provider_hooks.schemas import (
    ProviderHookCreate,
    ProviderHookNotification,
    ProviderHookNotificationPage,
    ProviderHookPage,
    ProviderHookRead,
    ProviderHookReceipt,
    ProviderHookWithUrl,
)
from nimbus_api.stages.cooldown import CooldownRules

router = APIRouter(prefix="/v1/provider-hooks", tags=["provider hooks"], responses=problem_responses(401))
ingest_router = APIRouter(prefix="/hooks", tags=["provider hooks"])

_NOT_FOUND = {404: [errors.NOT_FOUND]}


def _url(request: Request, provider: str, token: str) -> str:
    base = str(app_state(request).settings.public_url)
    return f"{base.rstrip('/')}/hooks/{provider}/{token}"


@router.post(
    "",
    name="provider_hooks_create",
    summary="Add a sending service's bounce and complaint webhook (the answer shows its URL, once)",
    status_code=201,
    responses=problem_responses(422),
)
async def provider_hooks_create(
    payload: ProviderHookCreate, request: Request, auth: AuthContext, session: Session, vault: VaultDep
) -> ProviderHookWithUrl:
    """Paste `url` into the provider's webhook settings (README, *Provider webhooks*). The URL carries a
    secret token and is shown in this answer only; `signing_key` and `basic_auth.password` are never shown."""
    row, token = await service.create(session, vault, auth.workspace_id, payload)
    return ProviderHookWithUrl(**service.to_read(row).model_dump(), url=_url(request, row.provider, token))


@router.get("", name="provider_hooks_list", summary="List provider hooks", responses=problem_responses(422))
async def provider_hooks_list(
    auth: AuthContext, session: Session, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> ProviderHookPage:
    rows, next_cursor = await service.list_page(session, auth.workspace_id, cursor=cursor, limit=limit)
    return ProviderHookPage(data=[service.to_read(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/{hook_id}",
    name="provider_hooks_get",
    summary="Get a provider hook",
    responses=problem_responses(404, 422, codes=_NOT_FOUND),
)
async def provider_hooks_get(hook_id: uuid.UUID, auth: AuthContext, session: Session) -> ProviderHookRead:
    return service.to_read(await service.get(session, auth.workspace_id, hook_id))


@router.get(
    "/{hook_id}/notifications",
    name="provider_hooks_notifications",
    summary="List the reports a provider hook accepted, and what each did",
    responses=problem_responses(404, 422, codes=_NOT_FOUND),
)
async def provider_hooks_notifications(
    hook_id: uuid.UUID, auth: AuthContext, session: Session, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> ProviderHookNotificationPage:
    """Newest first: each bounce, complaint or other event, the message it matched, and its outcome (an
    `unmatched` one names no message of this workspace). Kept `NIMBUS_PROVIDER_HOOKS_RETENTION_DAYS`."""
    rows, next_cursor = await service.notifications_page(
        session, auth.workspace_id, hook_id, cursor=cursor, limit=limit
    )
    return ProviderHookNotificationPage(
        data=[
            ProviderHookNotification(
                id=r.id,
                event_id=r.event_id,
                kind=r.kind,
                email=r.email,
                message_id=r.message_id,
                outcome=r.outcome,
                created_at=r.created_at,
            )
            for r in rows
        ],
        next_cursor=next_cursor,
    )


@router.delete(
    "/{hook_id}",
    name="provider_hooks_delete",
    summary="Delete a provider hook",
    status_code=204,
    responses=problem_responses(404, 422, codes=_NOT_FOUND),
)
async def provider_hooks_delete(hook_id: uuid.UUID, auth: AuthContext, session: Session) -> Response:
    """Its URL answers 404 from now on; what it already applied stays."""
    await service.remove(session, auth.workspace_id, hook_id)
    return Response(status_code=204)


_INGEST_ERRORS = problem_responses(
    400,
    401,
    403,
    404,
    422,
    502,
    codes={
        400: [errors.MALFORMED, "request.malformed"],
        401: [errors.UNAUTHORIZED],
        403: [
            errors.SIGNATURE_INVALID,
            errors.STALE,
            errors.REPLAYED,
            errors.CERT_URL_REFUSED,
            errors.TOPIC_MISMATCH,
        ],
        404: [errors.NOT_FOUND],
        502: [errors.UPSTREAM_FAILED],
    },
)


@ingest_router.post(
    "/{provider}/{token}",
    name="provider_hooks_ingest",
    summary="Receive a sending service's notification (no API key: the URL's token names the hook)",
    responses=_INGEST_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The provider's payload, exactly as it sends it (the bytes are what a signature "
            "covers): Amazon SNS JSON as `text/plain`; Postmark, SendGrid, Mailgun JSON; SMTP2GO JSON or a "
            "form. Any Content-Type is taken.",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def provider_hooks_ingest(provider: str, token: str, request: Request, session: Session) -> ProviderHookReceipt:
    """`provider` is `ses`, `postmark`, `sendgrid`, `mailgun` or `smtp2go`; an unknown provider or token is
    404. The notification's signature (or the hook's basic credentials) is checked before anything is read
    from it; each bounce or complaint is then applied once, as a DSN would be (README, *Provider webhooks*).
    A notification seen before answers 200 and changes nothing (`duplicates`)."""
    hook = await service.by_token(session, provider, token)
    body = await request.body()
    state = app_state(request)
    settings = state.settings
    now = utcnow()
    max_age = settings.provider_hooks_max_age_seconds
    found: list[reports.Report]
    confirmed = False
    if hook.provider == "ses":
        rules = sns.SnsRules(
            net=state.verifier.net,
            url_pattern=settings.provider_hooks_sns_url_pattern,
            max_age=max_age,
            timeout=settings.provider_hooks_timeout_seconds,
        )
        fields = sns.envelope(reports.parse_json(body))
        await sns.verify(fields, rules, hook.topic_arn, now)
        if fields["Type"] == "SubscriptionConfirmation":
            if not await apply.seen_before(session, hook, f"sns:{fields['MessageId']}", "subscription"):
                await sns.confirm(fields, rules)
                hook.subscription_confirmed_at = now
            confirmed = True
            found = []
        elif fields["Type"] == "Notification":
            found = reports.ses(fields["Message"], fields["MessageId"])
        else:
            found = []
    elif hook.provider in ("postmark", "smtp2go"):
        signatures.check_basic(hook, request.headers)
        if hook.provider == "postmark":
            found = reports.postmark(body)
        else:
            found = reports.smtp2go(_smtp2go_body(request.headers, body))
    elif hook.provider == "sendgrid":
        signatures.check_sendgrid(hook, request.headers, body, now, max_age)
        found = reports.sendgrid(body)
    else:
        found = await _mailgun(session, state.vault, hook, body, now, max_age)
    tally = await apply.apply(
        session,
        hook,
        found,
        apply.Rules(min_sample=settings.bounce_min_sample, cooldown=CooldownRules.from_settings(settings)),
        now,
    )
    return ProviderHookReceipt(
        received=tally.received,
        applied=tally.applied,
        unmatched=tally.unmatched,
        duplicates=tally.duplicates,
        ignored=tally.ignored,
        subscription_confirmed=confirmed,
    )


def _smtp2go_body(headers: Headers, body: bytes) -> dict[str, Any]:
    if headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode("utf-8"), max_num_fields=200))
        except (UnicodeDecodeError, ValueError):
            raise errors.HookPayloadMalformed("the form cannot be read") from None
    obj = reports.parse_json(body)
    if not isinstance(obj, dict):
        raise errors.HookPayloadMalformed("an SMTP2GO webhook is a JSON object")
    return obj


async def _mailgun(
    session: Session, vault: VaultDep, hook: ProviderHook, body: bytes, now: datetime, max_age: int
) -> list[reports.Report]:
    obj = reports.parse_json(body)
    signature = obj.get("signature") if isinstance(obj, dict) else None
    if not isinstance(signature, dict) or not all(
        isinstance(signature.get(k), str) and signature.get(k) for k in ("timestamp", "token", "signature")
    ):
        raise errors.HookPayloadMalformed("a Mailgun webhook carries `signature.timestamp`, `.token`, `.signature`")
    key = await vault.reveal_provider_hook_key(
        session, hook, actor=Actor.system(f"provider_hook:{hook.id}"), purpose="provider_hook"
    )
    signatures.check_mailgun(
        key.reveal(), signature["timestamp"], signature["token"], signature["signature"], now, max_age
    )
    if await apply.seen_before(session, hook, f"mailgun-token:{signature['token'][:200]}", "token"):
        raise errors.HookReplayed("this Mailgun signature token was already used")
    return reports.mailgun(obj)
