"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from redis.asyncio import Redis

from nimbus_api import __version__
from nimbus_api.account_imports.endpoints import router as account_imports_router
from nimbus_api.accounts.endpoints import router as accounts_router
from nimbus_api.alerts.endpoints import alerts_router, rules_router
from nimbus_api.api.body_limit import BodyLimitMiddleware
from nimbus_api.api.errors import install_error_handlers
from nimbus_api.api.gate import RequestGateMiddleware
from nimbus_api.api.health import router as health_router
from nimbus_api.api.internal_errors import InternalErrorMiddleware
from nimbus_api.api.openapi_edge import document_edge_responses
from nimbus_api.api.openapi_numbers import integer_bounds_as_integers
from nimbus_api.api.state import AppState
from nimbus_api.audit.endpoints import router as audit_router
from nimbus_api.campaigns.endpoints import router as campaigns_router
from nimbus_api.config import Settings, get_settings
from nimbus_api.contacts.endpoints import router as contacts_router
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.domains.endpoints import router as domains_router
from nimbus_api.enrollments.endpoints import router as enrollments_router
from nimbus_api.enrollments.endpoints import unsubscribe_router
from nimbus_api.events.document import register_webhooks, tidy_webhooks
from nimbus_api.events.endpoints import router as events_router
from nimbus_api.health.endpoints import router as account_health_router
from nimbus_api.inbox.endpoints import router as inbox_router
from nimbus_api.kit import metrics
from nimbus_api.kit.crypto import MasterKeyring
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.problems import ProblemDetail
from nimbus_api.kit.special_use import SpecialUseMiddleware, announce
from nimbus_api.metrics.endpoint import router as metrics_router
from nimbus_api.monitoring.endpoints import router as monitoring_router
from nimbus_api.oauth.endpoints import account_router as oauth_account_router
from nimbus_api.oauth.endpoints import router as oauth_router
from nimbus_api.provider_hooks.endpoints import ingest_router as provider_hooks_ingest_router
from nimbus_api.provider_hooks.endpoints import router as provider_hooks_router
from nimbus_api.providers.endpoints import router as providers_router
from nimbus_api.stages.endpoints import router as stages_router
from nimbus_api.suppressions.endpoints import router as suppressions_router
from nimbus_api.validation.service import build_verifier
from nimbus_api.warmup.endpoints import router as warmup_router
from nimbus_api.webhooks.endpoints import router as webhooks_router
from nimbus_api.webhooks.runtime import build_kit
from nimbus_api.workspaces.endpoints import router as workspace_router

log = structlog.get_logger(__name__)

DESCRIPTION = """
nimbus_api connects your own SMTP and IMAP mailboxes and sends outbound email through them.

Authenticate with `Authorization: Bearer <API key>`. Errors are `application/problem+json`
(RFC 9457) with a stable `code`. Lists use cursor pagination (`cursor`, `limit`, `next_cursor`).
POST requests accept an `Idempotency-Key` header. Request bodies are JSON objects (`Content-Type:
application/json`) unless an operation says otherwise, of at most 1 MB (the contact imports: 20 MB;
the operator may change both).
"""

# The contact and account imports take a larger body than the other operations (``max_import_body_bytes``).
IMPORT_PATHS = ("/v1/contacts/import", "/v1/contacts/import/csv", "/v1/email-accounts/imports")


def build_state(settings: Settings) -> AppState:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("NIMBUS_DATABASE_URL and NIMBUS_REDIS_URL must be set")
    keyring = MasterKeyring.from_strings([k.get_secret_value() for k in settings.master_keys])
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    redis = Redis.from_url(settings.redis_url)
    vault = Vault(keyring)
    verifier = build_verifier(settings, redis)
    return AppState(
        settings=settings,
        engine=engine,
        sessionmaker=make_sessionmaker(engine),
        redis=redis,
        vault=vault,
        verifier=verifier,
        webhooks=build_kit(settings, verifier.net, vault, Actor.system("webhook_test")),
    )


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None, *, state: AppState | None = None) -> FastAPI:
    """Build the app. ``state`` lets tests share one engine; otherwise the lifespan builds it."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = state is None
        app.state.nimbus = state or build_state(settings)
        log.info("api_started", version=__version__)
        announce(settings, "api")
        metrics.check_multiprocess_dir()
        try:
            yield
        finally:
            metrics.process_exit()
            if own:
                await app.state.nimbus.webhooks.close()
                await app.state.nimbus.redis.aclose()
                await app.state.nimbus.engine.dispose()

    app = FastAPI(
        title="nimbus_api",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    if state is not None:
        app.state.nimbus = state
    # Innermost first: each ``add_middleware`` wraps what was added before it.
    app.add_middleware(RequestGateMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        per_path=dict.fromkeys(IMPORT_PATHS, settings.max_import_body_bytes),
    )
    app.add_middleware(InternalErrorMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(SpecialUseMiddleware, allow=settings.allow_special_use_domains)
    install_error_handlers(app)
    for router in (
        health_router,
        workspace_router,
        account_imports_router,  # before accounts_router: `/imports` is not an `{account_id}`
        accounts_router,
        stages_router,
        domains_router,
        providers_router,
        audit_router,
        campaigns_router,
        enrollments_router,
        contacts_router,
        suppressions_router,
        events_router,
        inbox_router,
        webhooks_router,
        unsubscribe_router,
        account_health_router,
        warmup_router,
        rules_router,
        alerts_router,
        monitoring_router,
        provider_hooks_router,
        provider_hooks_ingest_router,
    ):
        app.include_router(router)
    # OAuth accounts (oauth/): the connect flow, and the re-authorization of an account
    app.include_router(oauth_router)
    app.include_router(oauth_account_router)
    if settings.metrics_token is not None:  # without the token there is no /metrics on the API at all
        app.include_router(metrics_router)
    register_webhooks(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.setdefault(
                "ProblemDetail", ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            for name, sub in (
                ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items()
            ):
                components.setdefault(name, sub)
            components["ProblemDetail"].pop("$defs", None)
            document_edge_responses(schema, settings, IMPORT_PATHS)
            integer_bounds_as_integers(schema)
            tidy_webhooks(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
