"""OAuth accounts: the connect attempts (one per authorize URL) and each OAuth account's grant.

An attempt moves ``pending -> succeeded | failed`` once, at its callback: ``state_hash`` (SHA-256 of the
``state`` the provider hands back) finds it, ``used_at`` makes a second callback with the same state a
replay, ``expires_at`` bounds it (``NIMBUS_OAUTH_STATE_TTL_SECONDS``). The PKCE verifier is sealed under
the workspace's data key. ``account_id`` is set from the start for a re-authorization (the account whose
tokens the callback replaces) and at success for a new connection.

A grant holds what is not secret about an OAuth account's tokens (the tokens themselves are credentials,
``oauth_access_token`` and ``oauth_refresh_token``): the provider, the granted scope, when the access
token expires, and ``token_version``, which goes up on every refresh so that a login refused with an old
token refreshes only if nobody refreshed since (``oauth.tokens``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class OAuthAttempt(Base):
    __tablename__ = "oauth_attempts"
    __table_args__ = (Index("ix_oauth_attempts_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(20))
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    data_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_keys.id"), index=True)
    verifier_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    frontend_url: Mapped[str] = mapped_column(String(2000))
    login_hint: Mapped[str | None] = mapped_column(String(320), default=None)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("email_accounts.id", ondelete="SET NULL"), default=None, index=True
    )
    reauthorize: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    error_code: Mapped[str | None] = mapped_column(String(60), default=None)
    error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OAuthGrant(Base):
    __tablename__ = "oauth_grants"
    __table_args__ = (Index("ix_oauth_grants_access_expires_at", "access_expires_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    scope: Mapped[str] = mapped_column(Text)
    access_expires_at: Mapped[datetime] = mapped_column()
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    refreshed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
