"""300 mailboxes imported through real ``nimbus worker`` processes against the mail world, one of them
SIGKILLed halfway: every row ends in its state, no account is created twice, and at no moment did one
host see more logins than the per-host cap.

Measured at the servers: each SMTP host name is its own SMTP server (``peak_connections``: the most
sessions open at once), each IMAP host name its own door in front of Dovecot (the most connections open
through it at once). The worker's leases are 6 s, so the rows the killed worker left ``verifying`` are
claimed again by the restarted worker's runner within ~10 s.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.models import AccountImportRow, EmailAccount
from tests.account_imports.fleet import Fleet, to_csv
from tests.conftest import Tenant
from tests.sending.fleet import Workers, wait_until

PER_HOST = 4
ENV = {
    "NIMBUS_ALLOW_SPECIAL_USE_DOMAINS": "true",
    "NIMBUS_ACCOUNT_IMPORT_LEASE_SECONDS": "6",
    "NIMBUS_ACCOUNT_IMPORT_PER_HOST": str(PER_HOST),
    "NIMBUS_ACCOUNT_IMPORT_PER_WORKSPACE": "16",
    "NIMBUS_VERIFY_LIMIT_PER_ACCOUNT": "10000",
    "NIMBUS_ROUNDTRIP_TIMEOUT": "10",
    "NIMBUS_VERIFICATION_TIMEOUT_SECONDS": "30",
}


async def _states(sm: async_sessionmaker[AsyncSession], import_id: uuid.UUID) -> list[AccountImportRow]:
    async with sm() as session:
        return list(await session.scalars(select(AccountImportRow).where(AccountImportRow.import_id == import_id)))


async def test_300_mailboxes_with_a_worker_killed_halfway(
    tenant: Tenant,
    fleet: Fleet,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    rows, expected = fleet.rows(good=250, wrong_password=30, unreachable=20)
    fleet.reset_peaks()
    workers = Workers(settings, tmp_path, **ENV)
    try:
        r = await tenant.client.post(
            "/v1/email-accounts/imports", content=to_csv(rows), headers={"content-type": "text/csv"}
        )
        assert r.status_code == 202, r.text
        import_id = uuid.UUID(r.json()["id"])
        workers.start()

        async def halfway() -> bool:
            done = [row for row in await _states(sessionmaker, import_id) if row.state not in ("pending", "verifying")]
            return len(done) >= 120

        await wait_until(halfway, 180, "120 rows verified", workers, every=0.2)
        progress = (await tenant.client.get(f"/v1/email-accounts/imports/{import_id}", params={"limit": 5})).json()
        workers.kill_all()  # SIGKILL with verifications in flight
        assert progress["status"] == "running" and sum(progress["counts"].values()) == 300, progress
        assert progress["counts"]["connected"] > 0 and progress["counts"]["pending"] > 0, progress
        assert len(progress["rows"]) == 5 and progress["next_cursor"]
        left = Counter(row.state for row in await _states(sessionmaker, import_id))
        assert left["verifying"] > 0 and left["pending"] > 0, left
        workers.start()

        async def finished() -> bool:
            found = await _states(sessionmaker, import_id)
            return all(row.state not in ("pending", "verifying") for row in found)

        await wait_until(finished, 300, "every row final", workers, every=0.5)
    finally:
        workers.kill_all()

    final = await _states(sessionmaker, import_id)
    got = {row.email: row.state if row.state != "failed" else f"failed:{row.code}" for row in final}
    assert got == expected
    assert max(row.attempts for row in final) >= 2, "some rows were claimed again after the kill"
    async with sessionmaker() as session:
        per_address = dict(
            (
                await session.execute(
                    select(func.lower(EmailAccount.email), func.count())
                    .where(EmailAccount.workspace_id == tenant.workspace_id)
                    .group_by(func.lower(EmailAccount.email))
                )
            ).all()
        )
    connected = [row for row in final if row.state == "connected"]
    assert len(per_address) == len(connected) == 250
    assert set(per_address.values()) == {1}, "an account was created twice"
    async with sessionmaker() as session:
        ids = set(
            await session.scalars(select(EmailAccount.id).where(EmailAccount.workspace_id == tenant.workspace_id))
        )
    assert {row.account_id for row in connected} == ids, "each connected row links its own account"
    assert all(row.smtp_ciphertext is None for row in final)
    peaks = fleet.peaks()
    assert all(peak <= PER_HOST for peak in peaks.values()), peaks
    assert max(peaks.values()) == PER_HOST, f"the cap was reached (the runner used it): {peaks}"
    detail = (await tenant.client.get(f"/v1/email-accounts/imports/{import_id}")).json()
    assert detail["status"] == "completed"
    assert detail["counts"] == {"pending": 0, "verifying": 0, "connected": 250, "failed": 50, "duplicate": 0}
