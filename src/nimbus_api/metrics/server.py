"""``nimbus metrics``: the metrics alone, on an interface and port of their own.

For a box that runs only workers (nothing else there serves its multiprocess directory), or to keep
``/metrics`` off the public listener: bind it to an address only the scraper reaches. It needs the
database URL for the PostgreSQL gauges (``NIMBUS_METRICS_POSTGRES=false``: none, and no database), never
the master keys or Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.responses import Response

from nimbus_api.api.errors import install_error_handlers
from nimbus_api.config import Settings
from nimbus_api.kit import metrics
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.metrics.endpoint import check_token, scrape


def create_metrics_app(settings: Settings) -> FastAPI:
    engine = make_engine(settings.database_url, pool_size=2, max_overflow=0) if settings.database_url else None
    sessionmaker = make_sessionmaker(engine) if engine is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.check_multiprocess_dir()
        try:
            yield
        finally:
            if engine is not None:
                await engine.dispose()

    app = FastAPI(title="nimbus_api metrics", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)

    @app.get("/metrics", name="metrics")
    async def metrics_endpoint(request: Request) -> Response:
        check_token(settings, request.headers.get("authorization"), open_without_token=True)
        return await scrape(settings, sessionmaker)

    return app
