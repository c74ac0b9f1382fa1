"""The import runner: verifies an import's rows in a worker, a bounded number at a time.

Row states (PostgreSQL is the truth; each move is one committed transaction):

    pending  --claim-->  verifying  --accounts.service.create-->  connected | failed | duplicate
    verifying (lease expired: its runner died)  --claim-->  verifying (attempts + 1)

* One runner per import at a time: it holds ``account_imports.runner_lease_until`` and renews it, with the
  leases of the rows it verifies and of its Redis semaphore places, every third of
  ``NIMBUS_ACCOUNT_IMPORT_LEASE_SECONDS``. A runner killed mid-import renews nothing: after the lease the
  ``resume`` cron (and every worker's startup) enqueues a new runner, which claims the rows left
  ``verifying`` again.
* A row is verified only once it holds a place in three semaphores (``semaphores``): its SMTP host, its
  IMAP host (``NIMBUS_ACCOUNT_IMPORT_PER_HOST`` each) and its workspace (``..._PER_WORKSPACE``), across
  every worker. A row whose host is full is passed over for one whose host has room.
* The verification is the one of ``POST /v1/email-accounts``: ``accounts.service.create`` (the same checks,
  limits and insert). The account, the row's link to it (``account_id``, ``connected``) and the erasing of
  the row's sealed passwords are one transaction: a row retried after a crash finds either its account
  linked or nothing written, and the unique address per workspace refuses a second account in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog
from redis.asyncio import Redis
from sqlalchemy import or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.account_imports.semaphores import Place, Semaphores, host_key, workspace_key
from nimbus_api.accounts import service as accounts
from nimbus_api.accounts.errors import EmailAccountExists, EmailAccountLimitReached
from nimbus_api.accounts.schemas import EmailAccountCreate
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, CredentialKind, Vault
from nimbus_api.kit.crypto import KeyringError
from nimbus_api.kit.db import utcnow
from nimbus_api.models import AccountImport, AccountImportRow
from nimbus_api.validation.service import VerificationFailed, VerificationRateLimited, Verifier

log = structlog.get_logger(__name__)
ACTOR = Actor.system("account_import")
_CANDIDATES = 64
_IDLE_WAIT = 0.05
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class RunnerConfig:
    per_host: int
    per_workspace: int
    lease_seconds: float
    max_accounts: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerConfig:
        return cls(
            per_host=settings.account_import_per_host,
            per_workspace=settings.account_import_per_workspace,
            lease_seconds=settings.account_import_lease_seconds,
            max_accounts=settings.max_accounts_per_workspace,
        )


def import_verifier(verifier: Verifier, settings: Settings) -> Verifier:
    """The single-account verifier with the import's own per-workspace window (the per-address limit and
    the failed-login lock are the same): 300 rows must not hit the window meant for one-by-one connects."""
    limits = replace(verifier.limits, per_workspace=settings.account_import_verify_limit_per_workspace)
    return replace(verifier, limits=limits)


def _lease(config: RunnerConfig) -> timedelta:
    return timedelta(seconds=config.lease_seconds)


async def claim_runner(session: AsyncSession, import_id: uuid.UUID, config: RunnerConfig) -> bool:
    """Take (or keep) the import's runner lease; False when a live runner holds it or it is done."""
    now = utcnow()
    taken = await session.execute(
        update(AccountImport)
        .where(
            AccountImport.id == import_id,
            AccountImport.status == "running",
            or_(AccountImport.runner_lease_until.is_(None), AccountImport.runner_lease_until < now),
        )
        .values(runner_lease_until=now + _lease(config))
        .returning(AccountImport.id)
    )
    return taken.scalar_one_or_none() is not None


class ImportRunner:
    def __init__(
        self,
        import_id: uuid.UUID,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: Vault,
        verifier: Verifier,
        redis: Redis,
        config: RunnerConfig,
    ) -> None:
        self.import_id = import_id
        self.sessionmaker = sessionmaker
        self.vault = vault
        self.verifier = verifier
        self.config = config
        self.semaphores = Semaphores(redis, lease_seconds=config.lease_seconds)
        self.in_flight: dict[uuid.UUID, tuple[asyncio.Task[None], Place]] = {}
        self.workspace_id: uuid.UUID | None = None

    async def run(self) -> bool:
        """Verify every open row; False when another runner holds the import (nothing was done)."""
        async with self.sessionmaker() as session, session.begin():
            if not await claim_runner(session, self.import_id, self.config):
                return False
            self.workspace_id = await session.scalar(
                select(AccountImport.workspace_id).where(AccountImport.id == self.import_id)
            )
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._loop()
        finally:
            heartbeat.cancel()
            for task, _ in list(self.in_flight.values()):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(heartbeat, *(t for t, _ in self.in_flight.values()), return_exceptions=True)
            for _, place in list(self.in_flight.values()):
                with contextlib.suppress(Exception):
                    await self.semaphores.release(place)
        await self._finish()
        return True

    async def _loop(self) -> None:
        while True:
            candidates = await self._candidates() if len(self.in_flight) < self.config.per_workspace else []
            if not candidates and not self.in_flight:
                return
            full: set[tuple[str | None, str | None]] = set()  # host pairs found without room in this pass
            for row_id, smtp_host, imap_host in candidates:
                if len(self.in_flight) >= self.config.per_workspace:
                    break
                if (smtp_host, imap_host) in full:
                    continue
                place = await self.semaphores.try_acquire(self._limits(smtp_host, imap_host))
                if place is None:
                    full.add((smtp_host, imap_host))
                    continue
                if not await self._claim(row_id):
                    await self.semaphores.release(place)
                    continue
                task = asyncio.create_task(self._verify(row_id))
                self.in_flight[row_id] = (task, place)
            tasks = [t for t, _ in self.in_flight.values()]
            if tasks:
                done, _ = await asyncio.wait(tasks, timeout=_IDLE_WAIT, return_when=asyncio.FIRST_COMPLETED)
                for row_id, (task, place) in list(self.in_flight.items()):
                    if task in done:
                        del self.in_flight[row_id]
                        await self.semaphores.release(place)
                        if not task.cancelled() and task.exception() is not None:
                            log.error("account_import_row_crashed", row_id=str(row_id), error=repr(task.exception()))
            else:
                await asyncio.sleep(_IDLE_WAIT)

    def _limits(self, smtp_host: str | None, imap_host: str | None) -> list[tuple[str, int]]:
        limits = [(workspace_key(self.workspace_id), self.config.per_workspace)]
        if smtp_host:
            limits.append((host_key("smtp", smtp_host), self.config.per_host))
        if imap_host:
            limits.append((host_key("imap", imap_host), self.config.per_host))
        return limits

    async def _candidates(self) -> list[tuple[uuid.UUID, str | None, str | None]]:
        """Open rows not in flight here, in file order: pending, or verifying with an expired lease."""
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(AccountImportRow.id, AccountImportRow.smtp_host, AccountImportRow.imap_host)
                .where(
                    AccountImportRow.import_id == self.import_id,
                    or_(
                        AccountImportRow.state == "pending",
                        (AccountImportRow.state == "verifying") & (AccountImportRow.lease_until < utcnow()),
                    ),
                    AccountImportRow.id.not_in(list(self.in_flight)) if self.in_flight else true(),
                )
                .order_by(AccountImportRow.row_number)
                .limit(_CANDIDATES)
            )
            return [(r[0], r[1], r[2]) for r in rows]

    async def _claim(self, row_id: uuid.UUID) -> bool:
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            claimed = await session.execute(
                update(AccountImportRow)
                .where(
                    AccountImportRow.id == row_id,
                    or_(
                        AccountImportRow.state == "pending",
                        (AccountImportRow.state == "verifying") & (AccountImportRow.lease_until < now),
                    ),
                )
                .values(
                    state="verifying",
                    lease_until=now + _lease(self.config),
                    attempts=AccountImportRow.attempts + 1,
                    updated_at=now,
                )
                .returning(AccountImportRow.id)
            )
            return claimed.scalar_one_or_none() is not None

    async def _heartbeat(self) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                now = utcnow()
                until = now + _lease(self.config)
                async with self.sessionmaker() as session, session.begin():
                    await session.execute(
                        update(AccountImport).where(AccountImport.id == self.import_id).values(runner_lease_until=until)
                    )
                    if self.in_flight:
                        await session.execute(
                            update(AccountImportRow)
                            .where(AccountImportRow.id.in_(list(self.in_flight)), AccountImportRow.state == "verifying")
                            .values(lease_until=until)
                        )
                for _, place in list(self.in_flight.values()):
                    await self.semaphores.renew(place)
            except Exception as exc:  # an outage: the next beat tries again; the leases are long enough
                log.warning("account_import_heartbeat_failed", import_id=str(self.import_id), error=repr(exc))

    async def _verify(self, row_id: uuid.UUID) -> None:
        try:
            async with self.sessionmaker() as session:
                try:
                    await verify_row(session, self.vault, self.verifier, row_id, max_accounts=self.config.max_accounts)
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        except Exception as exc:
            # A bug or an outage, not a mailbox's answer: the row goes back to ``pending`` for another try,
            # and after MAX_ATTEMPTS starts it fails, so one row can never keep an import running forever.
            log.error("account_import_row_failed", row_id=str(row_id), error=repr(exc))
            async with self.sessionmaker() as session, session.begin():
                row = await session.get(AccountImportRow, row_id, with_for_update=True)
                if row is not None and row.state == "verifying" and row.account_id is None:
                    if row.attempts >= MAX_ATTEMPTS:
                        _final(row, "failed", code="account_import.verification_error", detail=type(exc).__name__)
                    else:
                        row.state, row.lease_until = "pending", None

    async def _finish(self) -> None:
        async with self.sessionmaker() as session, session.begin():
            open_rows = await session.scalar(
                select(AccountImportRow.id)
                .where(
                    AccountImportRow.import_id == self.import_id,
                    AccountImportRow.state.in_(("pending", "verifying")),
                )
                .limit(1)
            )
            values: dict[str, object] = {"runner_lease_until": None}
            if open_rows is None:
                values.update(status="completed", finished_at=utcnow())
            await session.execute(update(AccountImport).where(AccountImport.id == self.import_id).values(**values))


def _final(row: AccountImportRow, state: str, **fields: str | None) -> None:
    """A final state: the sealed passwords are erased with it, in the same transaction."""
    row.state = state
    row.code = fields.get("code")
    row.detail = fields.get("detail")
    row.hint = fields.get("hint")
    row.lease_until = None
    row.smtp_ciphertext = row.imap_ciphertext = row.data_key_id = None
    row.updated_at = utcnow()


async def _open(
    session: AsyncSession, vault: Vault, row: AccountImportRow, kind: CredentialKind, ciphertext: bytes | None
) -> tuple[str | None, list[object]]:
    if ciphertext is None or row.data_key_id is None:
        return None, []
    secret, access = await vault.reveal_sealed(
        session,
        workspace_id=row.workspace_id,
        data_key_id=row.data_key_id,
        ciphertext=ciphertext,
        kind=kind,
        actor=ACTOR,
        purpose="verify",
    )
    return secret.reveal(), [access]


async def verify_row(
    session: AsyncSession, vault: Vault, verifier: Verifier, row_id: uuid.UUID, *, max_accounts: int
) -> str:
    """Verify one claimed row through ``accounts.service.create`` and record the outcome; returns the state.
    The row is locked only to record the outcome (the heartbeat renews its lease meanwhile); a row another
    attempt linked to its account keeps that link."""
    row = await session.scalar(select(AccountImportRow).where(AccountImportRow.id == row_id))
    if row is None or row.state != "verifying":
        return row.state if row is not None else "gone"
    if row.account_id is not None:  # linked by an earlier attempt: nothing to do again
        _final(row, "connected")
        return row.state
    settings = dict(row.settings or {})
    try:
        smtp_password, audits = await _open(session, vault, row, "smtp_password", row.smtp_ciphertext)
        imap_password, more = await _open(session, vault, row, "imap_password", row.imap_ciphertext)
    except KeyringError:
        _final(row, "failed", code="account_import.secret_unavailable", detail="the sealed password cannot be opened")
        return row.state
    audits += more
    smtp = {**settings["smtp"], "password": smtp_password}
    if smtp_password is None:
        smtp.pop("password")
    settings["smtp"] = smtp
    if settings.get("imap") is not None:
        settings["imap"] = {**settings["imap"], "password": imap_password}
    payload = EmailAccountCreate.model_validate(settings)
    outcome: tuple[str, dict[str, str | None]]
    account_id: uuid.UUID | None = None
    try:
        async with session.begin_nested():
            account, _ = await accounts.create(
                session, vault, verifier, row.workspace_id, payload, max_accounts=max_accounts
            )
    except VerificationFailed as exc:
        first = next(c for c in exc.result.checks if c.status == "failed")
        outcome = ("failed", {"code": exc.first_code, "detail": first.detail, "hint": first.hint})
    except EmailAccountExists:
        outcome = ("duplicate", {"detail": "this address is already connected in this workspace"})
    except EmailAccountLimitReached as exc:
        outcome = ("failed", {"code": exc.code, "detail": exc.detail})
    except VerificationRateLimited as exc:
        outcome = ("failed", {"code": exc.code, "detail": exc.detail, "hint": "import the row again later"})
    else:
        account_id = account.id
        for access in audits:
            access.account_id = account.id  # type: ignore[attr-defined]
        outcome = ("connected", {})
    await session.refresh(row, with_for_update=True)
    if row.account_id is not None:  # another attempt connected it meanwhile (and this one found it taken)
        return row.state
    _final(row, outcome[0], **outcome[1])
    row.account_id = account_id
    return row.state
