"""Request dependencies: the transaction (the edge owns it) and API-key authentication."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.problems import Unauthorized
from nimbus_api.validation.service import Verifier
from nimbus_api.workspaces import service as workspaces


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.nimbus
    return state


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed after the endpoint returns and before the response
    is sent (``scope="function"``), rolled back on any error."""
    async with app_state(request).sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


Session = Annotated[AsyncSession, Depends(_session, scope="function")]
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")


@dataclass(frozen=True)
class Auth:
    workspace_id: uuid.UUID
    api_key_id: uuid.UUID

    @property
    def actor(self) -> Actor:
        return Actor.api_key(self.api_key_id)


async def _authenticate(
    session: Session, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Auth:
    if credentials is None:
        raise Unauthorized("send `Authorization: Bearer <API key>`")
    key = await workspaces.authenticate(session, credentials.credentials)
    if key is None:
        raise Unauthorized("the API key is unknown or revoked")
    return Auth(workspace_id=key.workspace_id, api_key_id=key.id)


AuthContext = Annotated[Auth, Depends(_authenticate)]


def _vault(request: Request) -> Vault:
    return app_state(request).vault


VaultDep = Annotated[Vault, Depends(_vault)]


def _verifier(request: Request) -> Verifier:
    return app_state(request).verifier


VerifierDep = Annotated[Verifier, Depends(_verifier)]


def _settings(request: Request) -> Settings:
    return app_state(request).settings


SettingsDep = Annotated[Settings, Depends(_settings)]
