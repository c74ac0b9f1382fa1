"""Key rotation, online and resumable. Run by ``nimbus keys rotate``.

Master-key rotation (``rewrap_all``): every data key not wrapped by the primary master key is
unwrapped (by whichever configured master key opens it) and wrapped again by the primary. Each row is
independent, so an interrupted run simply continues where it stopped. Afterwards the old master key can
be removed from ``NIMBUS_MASTER_KEYS``.

Data-key rotation (``rotate_data_key``) for one workspace walks this state machine:

    start:    the active key becomes ``retiring``, a new ``active`` key is created (one transaction).
              If a ``retiring`` key already exists, a previous run was interrupted: resume, create none.
    migrate:  secrets still under a retiring key (mailbox passwords and OAuth tokens, then webhook
              signing secrets, then provider hooks' signing keys) are decrypted (audited, purpose
              ``key_rotation``) and encrypted under the active key, in batches, one transaction per
              batch. Then the sealed PKCE verifiers of OAuth
              connect attempts: a pending one is sealed again under the active key (a person may be at
              the provider's consent page: the callback must still open it); one that can no longer
              complete (used, failed, expired) has its verifier erased instead. An attempt whose callback
              is running right now is locked by it: it is skipped (``SKIP LOCKED``), and its callback
              erases the verifier when it commits.
    finish:   when no secret (nor sealed verifier, nor a fleet import row's sealed passwords, which are
              erased when the row is final) uses them, retiring keys become ``retired`` and their
              material is erased; one still in use stays retiring until the next run.

Sends in flight are unaffected: a secret row always names the key that opens it, and a retiring key
keeps opening until no row names it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit import crypto
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.models import AccountImportRow, Credential, DataKey, OAuthAttempt, ProviderHook, WebhookSecret

Progress = Callable[[int, int], None]
"""Called with (done, total) after each batch."""

ROTATION_ACTOR = Actor.system("keys-rotate")


def _no_progress(done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class RotationResult:
    data_key_id: uuid.UUID | None
    reencrypted: int
    retired: int
    resumed: bool


async def rewrap_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    *,
    batch_size: int = 200,
    progress: Progress = _no_progress,
) -> int:
    """Re-wrap every data key under the primary master key; returns how many were re-wrapped."""
    primary = vault.keyring.primary_id
    pending = (DataKey.master_key_id != primary) & DataKey.wrapped_key.is_not(None)
    async with sessionmaker() as session:
        total = await session.scalar(select(func.count()).select_from(DataKey).where(pending)) or 0
    done = 0
    progress(done, total)
    while True:
        async with sessionmaker() as session, session.begin():
            keys = list(await session.scalars(select(DataKey).where(pending).limit(batch_size).with_for_update()))
            if not keys:
                return done
            for key in keys:
                assert key.wrapped_key is not None
                key.wrapped_key, key.master_key_id = vault.keyring.wrap(vault.keyring.unwrap(key.wrapped_key))
        done += len(keys)
        progress(done, total)


async def _start(session: AsyncSession, vault: Vault, workspace_id: uuid.UUID) -> tuple[DataKey, bool]:
    keys = list(
        await session.scalars(
            select(DataKey)
            .where(DataKey.workspace_id == workspace_id, DataKey.state.in_(("active", "retiring")))
            .with_for_update()
        )
    )
    active = next((k for k in keys if k.state == "active"), None)
    if any(k.state == "retiring" for k in keys) and active is not None:
        return active, True
    if active is not None:
        active.state = "retiring"
        await session.flush()
    return await vault.create_data_key(session, workspace_id), False


async def rotate_data_key(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    workspace_id: uuid.UUID,
    *,
    batch_size: int = 200,
    progress: Progress = _no_progress,
) -> RotationResult:
    async with sessionmaker() as session, session.begin():
        active, resumed = await _start(session, vault, workspace_id)
    tally = _Tally(progress)
    sealed: list[tuple[type[_Sealed], Any, _Reveal]] = [
        (
            Credential,
            (Credential.workspace_id == workspace_id) & (Credential.data_key_id != active.id),
            lambda session, row: vault.reveal(session, row, actor=ROTATION_ACTOR, purpose="key_rotation"),
        ),
        (
            WebhookSecret,
            (WebhookSecret.workspace_id == workspace_id) & (WebhookSecret.data_key_id != active.id),
            lambda session, row: vault.reveal_webhook_secret(
                session, row, actor=ROTATION_ACTOR, purpose="key_rotation"
            ),
        ),
        (  # provider hooks' signing keys (Mailgun); a hook without one has no key
            ProviderHook,
            (ProviderHook.workspace_id == workspace_id)
            & ProviderHook.data_key_id.is_not(None)
            & (ProviderHook.data_key_id != active.id),
            lambda session, row: vault.reveal_provider_hook_key(
                session, row, actor=ROTATION_ACTOR, purpose="key_rotation"
            ),
        ),
    ]
    for model, stale, reveal in sealed:
        await _reencrypt(sessionmaker, vault, active.id, model, stale, reveal, batch_size=batch_size, tally=tally)
    done = tally.done
    done += await _reseal_attempts(sessionmaker, vault, workspace_id, active.id, batch_size)
    async with sessionmaker() as session, session.begin():
        # Whatever still names a retiring key keeps it (a secret added under it while this ran).
        still_used = union(
            select(Credential.data_key_id).where(Credential.workspace_id == workspace_id),
            select(WebhookSecret.data_key_id).where(WebhookSecret.workspace_id == workspace_id),
            select(ProviderHook.data_key_id).where(
                ProviderHook.workspace_id == workspace_id, ProviderHook.data_key_id.is_not(None)
            ),
            select(OAuthAttempt.data_key_id).where(
                OAuthAttempt.workspace_id == workspace_id, func.length(OAuthAttempt.verifier_ciphertext) > 0
            ),
            # an import's waiting rows: their passwords live only until the row is verified
            select(AccountImportRow.data_key_id).where(
                AccountImportRow.workspace_id == workspace_id, AccountImportRow.data_key_id.is_not(None)
            ),
        ).scalar_subquery()
        retired = await session.execute(
            update(DataKey)
            .where(
                DataKey.workspace_id == workspace_id,
                DataKey.state == "retiring",
                DataKey.id.not_in(still_used),
            )
            .values(state="retired", wrapped_key=None, retired_at=utcnow())
            .returning(DataKey.id)
        )
        retired_ids = list(retired.scalars())
    for key_id in retired_ids:
        vault.forget(key_id)
    return RotationResult(data_key_id=active.id, reencrypted=done, retired=len(retired_ids), resumed=resumed)


_Sealed = Credential | WebhookSecret | ProviderHook
_Reveal = Callable[[AsyncSession, Any], Awaitable[Secret]]


@dataclass
class _Tally:
    """The re-encryption's progress over every kind of sealed row (the total grows as each is counted)."""

    progress: Progress
    done: int = 0
    total: int = 0
    started: bool = False


async def _reencrypt(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    active_id: uuid.UUID,
    model: type[_Sealed],
    stale: Any,
    reveal: _Reveal,
    *,
    batch_size: int,
    tally: _Tally,
) -> None:
    """Open each ``model`` row that ``stale`` selects (audited by ``reveal``) and seal it under the active key,
    one transaction per batch; rows locked so a concurrent writer waits rather than races."""
    async with sessionmaker() as session:
        tally.total += await session.scalar(select(func.count()).select_from(model).where(stale)) or 0
    if not tally.started:  # one report before the first batch, then one after each
        tally.started = True
        tally.progress(tally.done, tally.total)
    while True:
        async with sessionmaker() as session, session.begin():
            rows: list[_Sealed] = list(
                await session.scalars(select(model).where(stale).limit(batch_size).with_for_update())
            )
            if not rows:
                return
            material = vault.material(await session.get_one(DataKey, active_id))
            for row in rows:
                secret = await reveal(session, row)
                row.ciphertext = crypto.encrypt(material, secret.reveal())
                row.data_key_id = active_id
        tally.done += len(rows)
        tally.progress(tally.done, tally.total)


async def _reseal_attempts(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    workspace_id: uuid.UUID,
    active_id: uuid.UUID,
    batch_size: int,
) -> int:
    """Move the sealed verifiers of the workspace's OAuth attempts off the retiring keys (module docstring);
    returns how many were sealed again."""
    stale = (
        (OAuthAttempt.workspace_id == workspace_id)
        & (OAuthAttempt.data_key_id != active_id)
        & (func.length(OAuthAttempt.verifier_ciphertext) > 0)
    )
    resealed = 0
    while True:
        async with sessionmaker() as session, session.begin():
            rows = list(
                await session.scalars(
                    select(OAuthAttempt).where(stale).limit(batch_size).with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return resealed
            material = vault.material(await session.get_one(DataKey, active_id))
            now = utcnow()
            for attempt in rows:
                if attempt.status != "pending" or attempt.used_at is not None or attempt.expires_at <= now:
                    attempt.verifier_ciphertext = b""  # it can never complete: keep nothing sealed
                    continue
                try:
                    verifier = await vault.unseal(session, attempt.data_key_id, attempt.verifier_ciphertext)
                except crypto.KeyringError:  # its key was retired before attempts were resealed: dead
                    attempt.verifier_ciphertext = b""
                    continue
                attempt.verifier_ciphertext = crypto.encrypt(material, verifier.reveal())
                attempt.data_key_id = active_id
                resealed += 1
