"""A data-key rotation while an import's rows wait: their sealed passwords keep the retiring key alive
until the rows are verified (and their passwords erased); the next rotation run then retires it."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials import rotation
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import AccountImportRow, DataKey
from tests.account_imports.conftest import run_import
from tests.account_imports.fleet import Fleet, to_csv
from tests.conftest import Tenant


async def test_a_rotation_waits_for_an_imports_sealed_passwords(
    tenant: Tenant,
    fleet: Fleet,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    redis: Redis,
    app_state: AppState,
) -> None:
    rows, expected = fleet.rows(good=2, wrong_password=0, unreachable=0)
    r = await tenant.client.post("/v1/email-accounts/imports", files={"file": ("fleet.csv", to_csv(rows), "text/csv")})
    assert r.status_code == 202, r.text
    import_id = uuid.UUID(r.json()["id"])
    async with sessionmaker() as session:
        [sealed_under] = set(
            await session.scalars(select(AccountImportRow.data_key_id).where(AccountImportRow.import_id == import_id))
        )
    assert sealed_under is not None

    first = await rotation.rotate_data_key(sessionmaker, vault, tenant.workspace_id)
    assert first.retired == 0, "the waiting rows still need the key their passwords are sealed under"
    async with sessionmaker() as session:
        assert (await session.get_one(DataKey, sealed_under)).state == "retiring"

    assert await run_import(
        import_id, settings=settings, sessionmaker=sessionmaker, vault=vault, redis=redis, app_state=app_state
    )
    done = (await tenant.client.get(f"/v1/email-accounts/imports/{import_id}")).json()
    assert {row["email"]: row["state"] for row in done["rows"]} == expected
    assert done["counts"]["connected"] == 2

    again = await rotation.rotate_data_key(sessionmaker, vault, tenant.workspace_id)
    assert again.retired == 1, again
    async with sessionmaker() as session:
        old = await session.get_one(DataKey, sealed_under)
        assert old.state == "retired" and old.wrapped_key is None
        left = await session.scalars(
            select(AccountImportRow.data_key_id).where(AccountImportRow.import_id == import_id)
        )
        assert set(left) == {None}, "final rows keep no sealed password"
