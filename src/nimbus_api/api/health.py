"""Liveness and readiness, without authentication (for load balancers and orchestrators)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from typing_extensions import TypeAliasType

from nimbus_api.api.deps import app_state

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 2.0
DependencyStatus = TypeAliasType("DependencyStatus", Literal["ok", "unavailable"])


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: DependencyStatus
    postgres: DependencyStatus
    redis: DependencyStatus


@router.get("/healthz", name="health_live", summary="Liveness")
async def health_live() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    name="health_ready",
    summary="Readiness: PostgreSQL and Redis reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is not reachable"}},
)
async def health_ready(request: Request) -> JSONResponse:
    state = app_state(request)

    async def postgres() -> None:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await state.redis.ping()

    async def probe(check: object) -> DependencyStatus:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT)  # type: ignore[operator]
        except Exception:
            return "unavailable"
        return "ok"

    pg, rd = await asyncio.gather(probe(postgres), probe(redis))
    ok = pg == "ok" and rd == "ok"
    body = Readiness(status="ok" if ok else "unavailable", postgres=pg, redis=rd)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
