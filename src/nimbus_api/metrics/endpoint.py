"""``GET /metrics`` (Prometheus text format), and who may read it.

On the API (``router``): mounted only when ``NIMBUS_METRICS_TOKEN`` is set, and answered to requests
that send it as ``Authorization: Bearer <token>`` (compared in constant time); without the setting the
path does not exist (404, as any unknown path), a missing or wrong token is a 401 ``metrics.unauthorized``.
So a deployment exposes nothing until an operator chooses to.

On a separate bind (``nimbus metrics --host --port``, ``metrics.server``): the interface is the
protection (a private address the scraper reaches), and the token is checked there too when it is set.

The path is left out of the OpenAPI document: it is not JSON and not part of the product's API.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from nimbus_api.api.deps import app_state
from nimbus_api.config import Settings
from nimbus_api.kit import metrics
from nimbus_api.kit.problems import NotFound, Unauthorized
from nimbus_api.metrics import postgres

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsUnauthorized(Unauthorized):
    code = "metrics.unauthorized"
    title = "Missing or wrong metrics token"


def check_token(settings: Settings, authorization: str | None, *, open_without_token: bool) -> None:
    """Raise unless the request may read the metrics (see the module docstring)."""
    expected = settings.metrics_token
    if expected is None:
        if open_without_token:
            return
        raise NotFound("no such path")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise MetricsUnauthorized("send `Authorization: Bearer <NIMBUS_METRICS_TOKEN>`")
    if not hmac.compare_digest(given.strip().encode(), expected.get_secret_value().encode()):
        raise MetricsUnauthorized("the metrics token is wrong")


async def scrape(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession] | None) -> Response:
    """The recorded metrics of this box's processes, then the PostgreSQL gauges (unless turned off)."""
    body = await asyncio.to_thread(metrics.render_process_metrics)  # reads the box's files: off the loop
    if settings.metrics_postgres and sessionmaker is not None:
        body += postgres.render(await postgres.read(sessionmaker))
    return Response(body, media_type=CONTENT_TYPE)


router = APIRouter()


@router.get("/metrics", name="metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    state = app_state(request)
    check_token(state.settings, request.headers.get("authorization"), open_without_token=False)
    return await scrape(state.settings, state.sessionmaker)
