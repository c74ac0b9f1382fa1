"""The access token of an OAuth account for the logins of a run (the sender's connections, a sync's
session, a warmup send): ``TokenSource`` is a ``password_source`` (``smtp.SmtpServer``) that asks
``tokens.current`` once, keeps the token for the run, and on a login the server refused with it
(``refused``) refreshes once, so a run meets an expired token with one refresh and one retry, never a loop.

A dead grant (``reauthorization_required``) or a token endpoint that cannot answer is raised as the
adapter's own error (``error``): ``smtp.auth_failed`` / ``imap.auth_failed`` for a dead grant, which the
sender turns into a pause and the sync into a failed poll, without another call to the provider.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, CredentialKind, Purpose, Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.sasl import AuthKind
from nimbus_api.models import EmailAccount
from nimbus_api.oauth import tokens
from nimbus_api.oauth.tokens import AccessToken, RefreshUnavailable

REAUTHORIZE_HINT = (
    "The provider refused to refresh the account's OAuth token (revoked, or consent withdrawn): "
    "re-authorize it with POST /v1/email-accounts/{id}/reauthorize."
)
ErrorFactory = Callable[[bool, str], Exception]
"""(the grant is dead, detail) -> the exception a login raises instead of using a token."""


class TokenSource:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: Vault,
        settings: Settings,
        account_id: uuid.UUID,
        *,
        actor: Actor,
        purpose: Purpose,
        error: ErrorFactory,
    ) -> None:
        self._sessionmaker, self._vault, self._settings = sessionmaker, vault, settings
        self._account_id, self._actor, self._purpose, self._error = account_id, actor, purpose, error
        self._lock = asyncio.Lock()
        self._token: AccessToken | None = None
        self._refreshed = False
        #: why the run's refresh failed (dead grant, detail): every later refused login is that failure
        self._failure: tuple[bool, str] | None = None

    async def _fetch(self, refused_version: int | None) -> AccessToken:
        try:
            async with self._sessionmaker() as session, session.begin():
                token = await tokens.current(
                    session,
                    self._vault,
                    self._settings,
                    self._account_id,
                    actor=self._actor,
                    purpose=self._purpose,
                    refused_version=refused_version,
                )
        except RefreshUnavailable as exc:
            self._failure = (False, f"the OAuth token could not be refreshed: {exc}")
            raise self._error(*self._failure) from None
        if token is None:
            self._failure = (True, "the OAuth grant is revoked or expired: the account needs re-authorization")
            raise self._error(*self._failure)
        return token

    async def __call__(self) -> Secret | None:
        async with self._lock:
            if self._token is None:
                self._token = await self._fetch(None)
            return self._token.secret

    async def refused(self) -> bool:
        """A login was refused with the token: refresh it (once per run; a caller that meets the refusal
        after another one refreshed gets the new token too). True when a token newer than the refused one
        is ready; each caller retries its login once at most. When the run's refresh failed, every call
        raises that failure (``error``): a token endpoint that was down is a transient failure of each
        login it spoiled, not the refused login's credential failure."""
        async with self._lock:
            if self._failure is not None:
                raise self._error(*self._failure)
            if self._token is None:
                return False
            if not self._refreshed:
                self._refreshed = True
                self._token = await self._fetch(self._token.version)
            return True


class LoginUnavailable(Exception):
    """An OAuth account's access token cannot be had now: ``dead`` (the grant needs re-authorization) or
    the token endpoint did not answer (try later). Not the same as having no secret at all."""

    def __init__(self, dead: bool, detail: str) -> None:
        super().__init__(detail)
        self.dead = dead


async def login_secret(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    account: EmailAccount,
    kind: CredentialKind,
    *,
    actor: Actor,
    purpose: Purpose,
) -> Secret | None:
    """What a one-off login of ``account`` uses (a warmup send or read, a reply): the stored password of
    ``kind`` (None: none is stored), or an OAuth account's current access token, refreshed when due.
    ``LoginUnavailable`` when the grant is dead or the token endpoint cannot answer: the login is then not
    tried, and the caller keeps its work for later rather than treating the mailbox as gone."""
    if account.auth_method != "oauth2":
        return await vault.reveal_for_account(session, account.id, kind, actor=actor, purpose=purpose)
    try:
        token = await tokens.current(session, vault, settings, account.id, actor=actor, purpose=purpose)
    except RefreshUnavailable as exc:
        raise LoginUnavailable(False, f"the OAuth token could not be refreshed: {exc}") from None
    if token is None:
        raise LoginUnavailable(True, "the OAuth grant is revoked or expired: the account needs re-authorization")
    return token.secret


def auth_kind(account: EmailAccount) -> AuthKind:
    return "oauth2" if account.auth_method == "oauth2" else "password"
