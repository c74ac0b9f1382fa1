"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from redis.asyncio import Redis
from starlette.exceptions import HTTPException as StarletteHTTPException

from nimbus_api import __version__
from nimbus_api.accounts.endpoints import router as accounts_router
from nimbus_api.api.health import router as health_router
from nimbus_api.api.state import AppState
from nimbus_api.audit.endpoints import router as audit_router
from nimbus_api.campaigns.endpoints import router as campaigns_router
from nimbus_api.config import Settings, get_settings
from nimbus_api.contacts.endpoints import router as contacts_router
from nimbus_api.credentials.vault import Vault
from nimbus_api.domains.endpoints import router as domains_router
from nimbus_api.enrollments.endpoints import router as enrollments_router
from nimbus_api.enrollments.endpoints import unsubscribe_router
from nimbus_api.kit.crypto import MasterKeyring
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.problems import PROBLEM_MEDIA_TYPE, FieldError, Problem, ProblemDetail, ValidationProblem
from nimbus_api.kit.special_use import SpecialUseMiddleware, announce
from nimbus_api.providers.endpoints import router as providers_router
from nimbus_api.suppressions.endpoints import router as suppressions_router
from nimbus_api.validation.service import build_verifier
from nimbus_api.workspaces.endpoints import router as workspace_router

log = structlog.get_logger(__name__)

DESCRIPTION = """
nimbus_api connects your own SMTP and IMAP mailboxes and sends outbound email through them.

Authenticate with `Authorization: Bearer <API key>`. Errors are `application/problem+json`
(RFC 9457) with a stable `code`. Lists use cursor pagination (`cursor`, `limit`, `next_cursor`).
POST requests accept an `Idempotency-Key` header.
"""


def _problem_response(problem: Problem, request: Request) -> JSONResponse:
    return JSONResponse(
        problem.to_body(instance=request.url.path),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return _problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only location, message and type are passed on: never the rejected input (it may be a password).
        errors = [
            FieldError(
                field=_field_of(tuple(err.get("loc", ()))),
                message=str(err.get("msg", "")).removeprefix("Value error, "),
                type=err["type"],
            )
            for err in exc.errors()
        ]
        return _problem_response(ValidationProblem(errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = Problem(str(exc.detail) if exc.detail else None, headers=dict(exc.headers or {}))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        body = {
            "type": f"urn:nimbus:problem:{code}",
            "title": problem.detail or "HTTP error",
            "status": exc.status_code,
            "code": code,
            "instance": request.url.path,
        }
        return JSONResponse(body, status_code=exc.status_code, headers=problem.headers, media_type=PROBLEM_MEDIA_TYPE)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        body = {
            "type": "urn:nimbus:problem:internal_error",
            "title": "Internal error",
            "status": 500,
            "code": "internal_error",
            "instance": request.url.path,
        }
        return JSONResponse(body, status_code=500, media_type=PROBLEM_MEDIA_TYPE)


def build_state(settings: Settings) -> AppState:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("NIMBUS_DATABASE_URL and NIMBUS_REDIS_URL must be set")
    keyring = MasterKeyring.from_strings([k.get_secret_value() for k in settings.master_keys])
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    redis = Redis.from_url(settings.redis_url)
    return AppState(
        settings=settings,
        engine=engine,
        sessionmaker=make_sessionmaker(engine),
        redis=redis,
        vault=Vault(keyring),
        verifier=build_verifier(settings, redis),
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
        try:
            yield
        finally:
            if own:
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
    _install_error_handlers(app)
    for router in (
        health_router,
        workspace_router,
        accounts_router,
        domains_router,
        providers_router,
        audit_router,
        campaigns_router,
        enrollments_router,
        contacts_router,
        suppressions_router,
        unsubscribe_router,
    ):
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.setdefault(
                "ProblemDetail", ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            for name, sub in (
                ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items()
            ):
                components.setdefault(name, sub)
            components["ProblemDetail"].pop("$defs", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
