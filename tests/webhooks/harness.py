"""Driving the real dispatcher from a test: a clock the test moves, a receiver, events committed for real.

``Rig`` wraps one ``Dispatcher`` (the production class, its SQL, its transport and egress policy) built
from the run's settings, without the NOTIFY listener: a test calls ``step()`` (one round, then wait for
the requests it started, then record them) so every attempt happens at a moment the test chose.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.events.service import timestamp
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import Event, WebhookAttempt, WebhookDelivery
from nimbus_api.webhooks.dispatcher import Dispatcher, RoundReport
from nimbus_api.webhooks.runtime import WebhookKit, build_dispatcher, build_kit


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Rig:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    kit: WebhookKit
    dispatcher: Dispatcher
    clock: Clock

    async def step(self, timeout: float = 30.0) -> RoundReport:
        """One round, then the requests it started are awaited and recorded (two rounds in all)."""
        report = await self.dispatcher.run_round()
        await self.dispatcher.drain(timeout)
        return report

    async def close(self) -> None:
        await self.kit.close()

    async def deliveries(self, event_id: uuid.UUID | None = None) -> list[WebhookDelivery]:
        async with self.sessionmaker() as session:
            stmt = select(WebhookDelivery).order_by(WebhookDelivery.id)
            if event_id is not None:
                stmt = stmt.where(WebhookDelivery.event_id == event_id)
            return list(await session.scalars(stmt))

    async def attempts(self, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
        async with self.sessionmaker() as session:
            return list(
                await session.scalars(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id == delivery_id)
                    .order_by(WebhookAttempt.number, WebhookAttempt.attempted_at)
                )
            )


def make_rig(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    *,
    clock: Clock | None = None,
    seed: int = 7,
    **overrides: Any,
) -> Rig:
    settings = settings.model_copy(update=overrides) if overrides else settings
    clock = clock or Clock()
    kit = build_kit(settings, build_net_context(settings), vault, Actor.system("webhook_dispatcher"))
    dispatcher = build_dispatcher(settings, kit, sessionmaker, listen=False, clock=clock, rng=random.Random(seed))
    return Rig(settings, sessionmaker, kit, dispatcher, clock)


async def commit_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace_id: uuid.UUID,
    datas: list[dict[str, Any]],
    event_type: str = "webhook.test",
) -> list[Event]:
    """Outbox rows with arbitrary ``data`` (the payloads conformance needs), committed."""
    now = datetime.now(UTC)
    rows = [
        Event(
            id=new_id(),
            workspace_id=workspace_id,
            type=event_type,
            payload={"type": event_type, "timestamp": timestamp(now), "data": data},
            created_at=now,
        )
        for data in datas
    ]
    async with sessionmaker() as session, session.begin():
        session.add_all(rows)
    return rows


async def add_endpoint(client: httpx.AsyncClient, url: str, **fields: Any) -> tuple[str, str]:
    """(endpoint id, secret) of a new endpoint of the client's workspace."""
    r = await client.post("/v1/webhook-endpoints", json={"url": url, **fields})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]


def url_of(receiver: Any, path: str = "/hook") -> str:
    """The receiver's URL under a name the run's DNS resolves to loopback (allowlisted by the run's settings)."""
    return f"https://mail.example.test:{receiver.port}{path}"


def body_of(received_body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(received_body)
    return parsed
