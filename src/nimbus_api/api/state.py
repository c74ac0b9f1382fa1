"""Process-wide resources of the API, built once in the app lifespan and reached through ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.validation.service import Verifier
from nimbus_api.webhooks.runtime import WebhookKit


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    vault: Vault
    verifier: Verifier
    webhooks: WebhookKit
